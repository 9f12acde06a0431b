//! The README's quick start runs verbatim: every shell block of README.md marked
//! `<!-- quickstart -->` (the line right before its ```` ```bash ```` fence) runs, in order, in
//! one bash session (variables carry over), against `tributary all` started with
//! deploy/local/tributary.toml, the file `make run` uses.
//!
//! What the test changes: the port of each listen address (and of `admin.public_url`), the topic
//! prefix, consumer group prefix and keyspace (unique per run, through `TRIBUTARY_*` variables;
//! `tributary.<topic>` in the README reads `<unique>.<topic>`), and `/tmp/` (a temporary
//! directory). Everything else, the admin token included, comes from the TOML file and the
//! README as written.
//!
//! The convention (also in an HTML comment above the blocks in the README):
//! - every command must exit 0 (`set -uo pipefail`; a command is one complete shell statement,
//!   possibly over several lines);
//! - `# → [eventually] [STATUS] [JSON] [  prose]` on the line right after a command is its
//!   expected answer; further lines starting with `#` and two spaces continue it:
//!   - STATUS: the HTTP status of the last `curl` of the command (read through a `curl` shell
//!     function that adds `-w '%{stderr}…'`, so what the command prints is untouched);
//!   - JSON: contained in the command's output, which must be one JSON value: an object's shown
//!     keys are present with the shown values (other keys may be there), an array matches item by
//!     item with the same length unless its last shown item is `…` (then the shown items are a
//!     prefix), `…` as a value matches anything, `…` inside a string matches any text, `…` as an
//!     object member is decoration;
//!   - `eventually`: the command is run again until it matches, for up to 30 s (reads of what
//!     the asynchronous pipeline writes; never put it on a write).
//!
//! Also asserted: the sentence "The workflow trigger is on the `<topic>` topic, keyed `<key>`."
//! that follows the blocks: exactly one record with that key on that topic.

use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};
use tributary_tests::{binary, cassandra, free_port, http, kafka, read_topic, Cluster};

const ELLIPSIS: &str = "…";
const EVENTUALLY: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------ the README

#[derive(Debug)]
struct Step {
    /// README line of the command's first line.
    line: usize,
    command: String,
    expect: Option<Expect>,
}

#[derive(Debug)]
struct Expect {
    text: String,
    eventually: bool,
    status: Option<u16>,
    json: Option<Value>,
}

/// The commands of the marked blocks, in order.
fn quickstart_steps(readme: &str) -> Vec<Step> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut steps = Vec::new();
    let mut blocks = 0;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != "<!-- quickstart -->" {
            i += 1;
            continue;
        }
        let fence = lines.get(i + 1).copied().unwrap_or("");
        assert!(
            fence == "```bash" || fence == "```sh",
            "README.md:{}: `<!-- quickstart -->` must be right before a ```bash fence, not {fence:?}",
            i + 1
        );
        let start = i + 2;
        let end = (start..lines.len()).find(|&j| lines[j].trim_start().starts_with("```")).unwrap_or_else(|| panic!("README.md:{}: unclosed block", i + 2));
        parse_block(&lines[start..end], start + 1, &mut steps);
        blocks += 1;
        i = end + 1;
    }
    assert!(blocks > 0, "README.md has no block marked `<!-- quickstart -->`");
    for s in steps.iter_mut() {
        if let Some(e) = s.expect.as_mut() {
            parse_expect(e).unwrap_or_else(|err| panic!("README.md:{}: bad `# →` line ({err}): {}", s.line, e.text));
        }
    }
    steps
}

fn parse_block(lines: &[&str], first_line_no: usize, steps: &mut Vec<Step>) {
    #[derive(PartialEq)]
    enum Prev {
        Other,
        Command,
        Expect,
    }
    let mut pending: Option<(usize, String)> = None;
    let mut prev = Prev::Other;
    for (k, raw) in lines.iter().enumerate() {
        let no = first_line_no + k;
        if let Some((start, mut text)) = pending.take() {
            text.push('\n');
            text.push_str(raw);
            if complete(&text) {
                steps.push(Step { line: start, command: text, expect: None });
                prev = Prev::Command;
            } else {
                pending = Some((start, text));
            }
            continue;
        }
        let t = raw.trim_start();
        if let Some(rest) = t.strip_prefix("# →") {
            assert!(prev == Prev::Command, "README.md:{no}: `# →` must be on the line right after its command");
            let step = steps.last_mut().unwrap();
            step.expect = Some(Expect { text: rest.trim().to_string(), eventually: false, status: None, json: None });
            prev = Prev::Expect;
            continue;
        }
        if prev == Prev::Expect && t.starts_with("#  ") {
            let e = steps.last_mut().unwrap().expect.as_mut().unwrap();
            e.text.push(' ');
            e.text.push_str(t[1..].trim());
            continue;
        }
        prev = Prev::Other;
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if complete(raw) {
            steps.push(Step { line: no, command: raw.to_string(), expect: None });
            prev = Prev::Command;
        } else {
            pending = Some((no, raw.to_string()));
        }
    }
    if let Some((start, text)) = pending {
        panic!("README.md:{start}: the command does not end within its block:\n{text}");
    }
}

/// A shell statement is complete when bash parses it (quotes and `$(` closed) and its last line
/// does not end with a backslash.
fn complete(text: &str) -> bool {
    if text.trim_end().ends_with('\\') {
        return false;
    }
    Command::new("bash").args(["-n", "-c", text]).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
}

/// `[eventually] [STATUS] [JSON] [  prose]`.
fn parse_expect(e: &mut Expect) -> Result<(), String> {
    let mut rest = e.text.as_str();
    if let Some(r) = rest.strip_prefix("eventually") {
        e.eventually = true;
        rest = r.trim_start();
    }
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.len() == 3 && rest[3..].chars().next().is_none_or(char::is_whitespace) {
        e.status = Some(digits.parse().unwrap());
        rest = rest[3..].trim_start();
    }
    if rest.starts_with('{') || rest.starts_with('[') || rest.starts_with('"') {
        let prepared = prepare_json(rest)?;
        let mut it = serde_json::Deserializer::from_str(&prepared).into_iter::<Value>();
        let v = it.next().ok_or("no JSON")?.map_err(|err| format!("JSON: {err}"))?;
        let after = &prepared[it.byte_offset()..];
        if !(after.is_empty() || after.starts_with(char::is_whitespace)) {
            return Err(format!("text right after the JSON: {after:?}"));
        }
        e.json = Some(v);
    }
    if e.status.is_none() && e.json.is_none() {
        return Err("neither a status nor JSON".into());
    }
    Ok(())
}

/// The README's JSON with bare `…` made valid: as a value or an array item it becomes the string
/// `"…"` (anything); as an object member it is dropped.
fn prepare_json(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut stack: Vec<char> = Vec::new();
    let (mut in_str, mut escaped) = (false, false);
    for c in s.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => stack.push(c),
            '}' | ']' => {
                stack.pop();
            }
            '…' => {
                let prev = out.trim_end().chars().last();
                if stack.last() == Some(&'{') && matches!(prev, Some(',') | Some('{')) {
                    if prev == Some(',') {
                        let cut = out.trim_end().len() - 1;
                        out.truncate(cut);
                    }
                    continue;
                }
                out.push_str("\"…\"");
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    Ok(out)
}

// ------------------------------------------------------------------ matching

fn contains(expected: &Value, actual: &Value, path: &str) -> Result<(), String> {
    match expected {
        Value::String(s) if s == ELLIPSIS => Ok(()),
        Value::String(s) if s.contains(ELLIPSIS) => match actual {
            Value::String(a) if glob(s, a) => Ok(()),
            _ => Err(format!("{path}: expected {expected}, got {actual}")),
        },
        Value::Object(m) => {
            let Value::Object(a) = actual else { return Err(format!("{path}: expected an object, got {actual}")) };
            for (k, v) in m {
                let p = format!("{path}.{k}");
                let av = a.get(k).ok_or_else(|| format!("{p}: missing (the answer has {:?})", a.keys().collect::<Vec<_>>()))?;
                contains(v, av, &p)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let Value::Array(a) = actual else { return Err(format!("{path}: expected an array, got {actual}")) };
            let open = items.last().is_some_and(|l| l.as_str() == Some(ELLIPSIS));
            let shown = if open { &items[..items.len() - 1] } else { &items[..] };
            if (open && a.len() < shown.len()) || (!open && a.len() != shown.len()) {
                return Err(format!("{path}: expected {} item(s){}, got {}: {actual}", shown.len(), if open { " or more" } else { "" }, a.len()));
            }
            for (i, (e, v)) in shown.iter().zip(a).enumerate() {
                contains(e, v, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        Value::Number(n) => match actual {
            Value::Number(m) if n == m || (n.as_f64().is_some() && n.as_f64() == m.as_f64()) => Ok(()),
            _ => Err(format!("{path}: expected {expected}, got {actual}")),
        },
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: expected {expected}, got {actual}")),
    }
}

/// `pattern` with `…` matching any text.
fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split(ELLIPSIS).collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

// ------------------------------------------------------------------ the fleet

/// `[section] key = "value"` lines of a TOML file (enough for deploy/local/tributary.toml).
fn toml_values(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with('#') || l.is_empty() {
            continue;
        }
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = s.to_string();
        } else if let Some((k, v)) = l.split_once('=') {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.split_once('"')).map(|(v, _)| v).unwrap_or(v);
            out.insert(format!("{section}.{}", k.trim()), v.to_string());
        }
    }
    out
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap().trim_end_matches('/')
}

/// `tributary --config <toml> migrate`, then `tributary --config <toml> all`, as `make run` does,
/// with the cluster's names and free ports. Returns the path of its log.
fn start_fleet(c: &mut Cluster, config: &Path, public_url: &str) -> PathBuf {
    let log_dir = binary().parent().unwrap().join("e2e-logs");
    std::fs::create_dir_all(&log_dir).unwrap();
    for _attempt in 0..5 {
        let health = free_port();
        let public = public_url.replacen(&format!(":{}", port_of(public_url)), &format!(":{}", c.gateway_port), 1);
        c.env = vec![
            ("TRIBUTARY_KAFKA_BROKERS".into(), kafka()),
            ("TRIBUTARY_KAFKA_TOPIC_PREFIX".into(), c.name.clone()),
            ("TRIBUTARY_KAFKA_GROUP_PREFIX".into(), c.name.clone()),
            ("TRIBUTARY_CASSANDRA_NODES".into(), format!("[\"{}\"]", cassandra())),
            ("TRIBUTARY_CASSANDRA_KEYSPACE".into(), c.name.clone()),
            ("TRIBUTARY_GATEWAY_LISTEN".into(), format!("127.0.0.1:{}", c.gateway_port)),
            ("TRIBUTARY_ADMIN_LISTEN".into(), format!("127.0.0.1:{}", c.admin_port)),
            ("TRIBUTARY_ADMIN_PUBLIC_URL".into(), public),
            ("TRIBUTARY_WORKERS_HEALTH_LISTEN".into(), format!("127.0.0.1:{health}")),
        ];
        let command = |role: &str| {
            let mut cmd = Command::new(binary());
            cmd.arg("--config").arg(config).arg(role);
            // Only the TOML file and the overrides above: none of the caller's TRIBUTARY_*.
            for (k, _) in std::env::vars() {
                if k.starts_with("TRIBUTARY_") {
                    cmd.env_remove(k);
                }
            }
            cmd.envs(c.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            cmd
        };
        let out = command("migrate").output().expect("run migrate");
        assert!(out.status.success(), "migrate failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let log_path = log_dir.join(format!("{}-all-{health}.log", c.name));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = command("all").stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("spawn tributary all");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut pending = vec![c.gateway_port, c.admin_port, health];
        loop {
            pending.retain(|&p| !matches!(http::try_request(p, "GET", "/readyz", &[], None), Ok((200, _, _))));
            if pending.is_empty() {
                eprintln!("fleet: tributary all (log {}), gateway :{}, admin :{}", log_path.display(), c.gateway_port, c.admin_port);
                c.procs.push(("all".into(), child));
                return log_path;
            }
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                if text.contains("Address already in use") {
                    break;
                }
                panic!("tributary all exited ({status}) before it was ready:\n{}", tail(&text, 30));
            }
            assert!(Instant::now() < deadline, "tributary all: ports {pending:?} not ready after 60 s (log {})", log_path.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        c.gateway_port = free_port();
        c.admin_port = free_port();
    }
    panic!("tributary all: no free ports after 5 attempts");
}

/// The last `n` lines, without terminal colours.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut chars = lines[lines.len().saturating_sub(n)..].join("\n").chars().collect::<Vec<_>>().into_iter();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            out.push(c);
        }
    }
    out
}

// ------------------------------------------------------------------ the bash session

struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    dir: PathBuf,
}

struct Run {
    rc: i32,
    stdout: String,
    stderr: String,
    status: Option<u16>,
}

const STATUS_MARK: &str = "@@readme-http-status ";
const DONE_MARK: &str = "@@readme-done ";

impl Session {
    fn start(dir: &Path) -> Session {
        let mut child = Command::new("bash")
            .args(["--norc", "--noprofile"])
            .current_dir(root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("session.err")).unwrap())
            .spawn()
            .expect("bash");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stdin = child.stdin.take().unwrap();
        // The status of each curl goes to stderr: what a command prints stays as it is.
        writeln!(stdin, "set -uo pipefail\ncurl() {{ command curl -w '%{{stderr}}\\n{STATUS_MARK}%{{http_code}}\\n' \"$@\"; }}").unwrap();
        Session { child, stdin, lines: rx, dir: dir.to_path_buf() }
    }

    fn run(&mut self, command: &str) -> Run {
        let (out, err) = (self.dir.join("cmd.out"), self.dir.join("cmd.err"));
        let script = format!(
            "{{ {command}\n}} >'{}' 2>'{}' </dev/null; printf '\\n{DONE_MARK}%s\\n' \"$?\"\n",
            out.display(),
            err.display()
        );
        self.stdin.write_all(script.as_bytes()).and_then(|_| self.stdin.flush()).expect("write to bash");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let rc = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Some(rc) = l.strip_prefix(DONE_MARK) {
                        break rc.trim().parse().unwrap_or(-1);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("no answer within {COMMAND_TIMEOUT:?} from:\n{command}"),
                Err(_) => {
                    let session_err = std::fs::read_to_string(self.dir.join("session.err")).unwrap_or_default();
                    let cmd_err = std::fs::read_to_string(&err).unwrap_or_default();
                    panic!("the bash session ended during:\n{command}\n{session_err}{cmd_err}")
                }
            }
        };
        let stdout = std::fs::read_to_string(&out).unwrap_or_default();
        let raw_err = std::fs::read_to_string(&err).unwrap_or_default();
        let mut status = None;
        let mut stderr = String::new();
        for l in raw_err.lines() {
            match l.strip_prefix(STATUS_MARK) {
                Some(s) => status = s.trim().parse().ok(),
                None if l.is_empty() => {}
                None => {
                    stderr.push_str(l);
                    stderr.push('\n');
                }
            }
        }
        Run { rc, stdout, stderr, status }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn check(e: &Expect, r: &Run) -> Result<(), String> {
    if r.rc != 0 {
        return Err(format!("exit status {}", r.rc));
    }
    if let Some(want) = e.status {
        match r.status {
            Some(got) if got == want => {}
            Some(got) => return Err(format!("HTTP status {got}, the README shows {want}")),
            None => return Err("the README shows an HTTP status, but the command ran no curl".into()),
        }
    }
    if let Some(want) = &e.json {
        let got: Value = serde_json::from_str(r.stdout.trim()).map_err(|err| format!("the output is not one JSON value ({err})"))?;
        contains(want, &got, "$")?;
    }
    Ok(())
}

// ------------------------------------------------------------------ the test

#[test]
fn readme_quick_start_runs_verbatim() {
    let started = Instant::now();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let config = root().join("deploy/local/tributary.toml");
    let toml = toml_values(&std::fs::read_to_string(&config).expect("deploy/local/tributary.toml"));
    let get = |k: &str| toml.get(k).unwrap_or_else(|| panic!("deploy/local/tributary.toml has no {k}")).clone();
    let (gateway_listen, admin_listen, public_url, prefix) = (get("gateway.listen"), get("admin.listen"), get("admin.public_url"), get("kafka.topic_prefix"));
    let steps = quickstart_steps(&readme);
    assert!(steps.iter().any(|s| s.expect.is_some()), "no `# →` expectation in the quick start");

    let mut c = Cluster::new();
    let fleet_log = start_fleet(&mut c, &config, &public_url);
    let tmp = std::env::temp_dir().join(format!("readme-{}", c.name));
    std::fs::create_dir_all(&tmp).unwrap();

    // What differs from `make run`: ports, topic prefix, /tmp/.
    let (gw, ad) = (port_of(&gateway_listen).to_string(), port_of(&admin_listen).to_string());
    let mut subs: Vec<(String, String)> = Vec::new();
    for host in ["localhost", "127.0.0.1"] {
        subs.push((format!("{host}:{gw}"), format!("{host}:{}", c.gateway_port)));
        subs.push((format!("{host}:{ad}"), format!("{host}:{}", c.admin_port)));
    }
    for topic in ["raw", "normalized", "actions", "triggers", "action-logs"] {
        subs.push((format!("{prefix}.{topic}"), c.topic(topic)));
    }
    subs.push(("/tmp/".into(), format!("{}/", tmp.display())));
    let local = |s: &str| subs.iter().fold(s.to_string(), |acc, (from, to)| acc.replace(from, to));
    let local_json = |v: &Value| -> Value { serde_json::from_str(&local(&v.to_string())).unwrap() };

    let mut session = Session::start(&tmp);
    for step in &steps {
        let command = local(&step.command);
        let t0 = Instant::now();
        eprintln!("\n$ {}", command.replace('\n', "\n> "));
        let expect = step.expect.as_ref().map(|e| Expect { text: e.text.clone(), eventually: e.eventually, status: e.status, json: e.json.as_ref().map(local_json) });
        let mut attempts = 0;
        loop {
            attempts += 1;
            let r = session.run(&command);
            let verdict = match &expect {
                Some(e) => check(e, &r),
                None if r.rc != 0 => Err(format!("exit status {}", r.rc)),
                None => Ok(()),
            };
            match verdict {
                Ok(()) => {
                    if !r.stdout.trim().is_empty() {
                        eprintln!("{}", r.stdout.trim_end());
                    }
                    let status = r.status.map(|s| format!(", HTTP {s}")).unwrap_or_default();
                    eprintln!("  ok (README.md:{}{status}, {attempts} run(s), {} ms)", step.line, t0.elapsed().as_millis());
                    break;
                }
                Err(_) if expect.as_ref().is_some_and(|e| e.eventually) && t0.elapsed() < EVENTUALLY => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(why) => {
                    let log = tail(&std::fs::read_to_string(&fleet_log).unwrap_or_default(), 15);
                    panic!(
                        "README.md:{}: the quick start fails: {why}\n  command: {command}\n  README:  # → {}\n  HTTP status: {}\n  output: {}\n  stderr: {}\n  ({attempts} run(s) in {} ms)\n  last lines of the fleet's log ({}):\n{}",
                        step.line,
                        step.expect.as_ref().map(|e| e.text.as_str()).unwrap_or("(nothing: it must exit 0)"),
                        r.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        r.stdout.trim_end(),
                        r.stderr.trim_end(),
                        t0.elapsed().as_millis(),
                        fleet_log.display(),
                        log
                    );
                }
            }
        }
    }

    // "The workflow trigger is on the `tributary.triggers` topic, keyed `development/order-completed`."
    let sentence = "The workflow trigger is on the `";
    let at = readme.find(sentence).unwrap_or_else(|| panic!("README.md no longer says {sentence}…"));
    let rest = &readme[at + sentence.len()..];
    let (topic, rest) = rest.split_once("` topic, keyed `").expect("… `<topic>` topic, keyed `<key>`");
    let key = rest.split_once('`').expect("closing backtick").0;
    let topic = local(topic);
    assert_eq!(topic, c.topic("triggers"), "README.md names the trigger topic {topic}");
    let records = read_topic(&topic, EVENTUALLY, 1);
    let keys: Vec<&str> = records.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, vec![key], "{topic}: expected exactly one trigger keyed {key}; records: {records:?}");
    eprintln!("\n{topic}: one record keyed {key}: {}", records[0].1);

    drop(session);
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("README quick start: {} commands, {} ms", steps.len(), started.elapsed().as_millis());
}

/// The convention itself, without services: what `# →` lines mean.
#[test]
fn expectation_convention() {
    let parse = |text: &str| {
        let mut e = Expect { text: text.into(), eventually: false, status: None, json: None };
        parse_expect(&mut e).map(|()| e)
    };
    let e = parse(r#"eventually 202 {"id":"…","n":1,"s":"tok_…","o":{"a":true,…},"any":…,"l":[1,…]}   (prose)"#).unwrap();
    assert!(e.eventually);
    assert_eq!(e.status, Some(202));
    let want = e.json.unwrap();
    let ok = serde_json::json!({"id": 7, "n": 1.0, "s": "tok_x", "o": {"a": true, "b": 2}, "any": [null], "l": [1, 2, 3], "more": 0});
    contains(&want, &ok, "$").unwrap();
    for (bad, path) in [
        (serde_json::json!({"id": 7, "n": 2, "s": "tok_x", "o": {"a": true}, "any": 0, "l": [1]}), "$.n"),
        (serde_json::json!({"id": 7, "n": 1, "s": "tk_x", "o": {"a": true}, "any": 0, "l": [1]}), "$.s"),
        (serde_json::json!({"id": 7, "n": 1, "s": "tok_", "o": {}, "any": 0, "l": [1]}), "$.o.a"),
        (serde_json::json!({"n": 1, "s": "tok_", "o": {"a": true}, "any": 0, "l": [1]}), "$.id"),
        (serde_json::json!({"id": 7, "n": 1, "s": "tok_", "o": {"a": true}, "any": 0, "l": []}), "$.l"),
    ] {
        let err = contains(&want, &bad, "$").unwrap_err();
        assert!(err.starts_with(path), "{err}");
    }
    // Arrays without a trailing `…` have the length shown.
    let e = parse(r#"{"events":[{"name":"a"}]}"#).unwrap();
    assert!(contains(e.json.as_ref().unwrap(), &serde_json::json!({"events": [{"name": "a"}, {"name": "a"}]}), "$").is_err());
    assert_eq!(parse("404").unwrap().status, Some(404));
    assert!(parse("some words").is_err());
    assert!(parse(r#"{"a":1}x"#).is_err());
    assert!(glob("a…b…c", "a12b34c") && !glob("a…b…c", "a12c") && !glob("ab…ba", "aba"));
}
