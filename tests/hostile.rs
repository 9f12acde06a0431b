//! Hostile traffic against the running gateway and admin API (each its own process, real Kafka
//! and Cassandra): slow and idle clients, oversized and malformed requests, a gzip bomb,
//! HTTP/2 streams abandoned and reset. Each gets its documented 4xx or is cut off after its
//! timeout; the processes stay up, their memory stays bounded and the next good request
//! succeeds. Then the admin token: 401 in the error shape, no timing difference between a
//! nearly right and a plainly wrong token; and no secret of the run in any log it wrote.
//!
//! Timeouts are set short here (`http.*`), so each cut-off is seen within seconds.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tributary_tests::{http, Cluster, ADMIN_TOKEN};
extern crate http as http1;

const HEADER_TIMEOUT_MS: u64 = 1500;
const BODY_TIMEOUT_MS: u64 = 2000;
const IDLE_TIMEOUT_MS: u64 = 2000;
const ADMIN_MAX_CONNECTIONS: usize = 40;
const MAX_BODY: usize = 8 * 1024 * 1024;

/// A response read off a raw socket: status (0 when the server closed without one) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    head: String,
}

fn code(a: &Answer) -> &str {
    a.body["error"]["code"].as_str().unwrap_or("")
}

/// Read one response (until the server closes, or `Content-Length` is satisfied).
fn read_answer(s: &mut TcpStream, wait: Duration) -> Answer {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|n| raw.len() >= split + 4 + n) {
                break;
            }
        }
    }
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Answer { status: 0, body: Value::Null, head: String::new() };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = serde_json::from_slice(&raw[split + 4..]).unwrap_or(Value::Null);
    Answer { status, body, head }
}

/// Send raw bytes (write errors ignored: the server may answer and close before it has read
/// everything) and read the answer.
fn send_raw(port: u16, bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = s.write_all(bytes);
    read_answer(&mut s, Duration::from_secs(30))
}

fn post_raw(port: u16, path: &str, extra_headers: &str, body: &[u8]) -> Answer {
    let head = format!("POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{extra_headers}\r\n", body.len());
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(port, &bytes)
}

/// Whether the server closed `s` within `wait` (reads return EOF or reset; nothing else comes).
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // an answer (a 408, say): keep reading to the close
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
    false
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process is alive");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn gzip_zeros(mib: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..mib {
        e.write_all(&zeros).unwrap();
    }
    e.finish().unwrap()
}

struct Run {
    c: Cluster,
    token: String,
}

impl Run {
    fn path(&self) -> String {
        format!("/integrations/receive/{}", self.token)
    }

    /// The next good request succeeds, and both processes are still running.
    fn still_serving(&mut self, after: &str) {
        for (role, child) in self.c.procs.iter_mut() {
            assert!(child.try_wait().unwrap().is_none(), "{role} exited after {after}");
        }
        let one = br#"{"type":"track","event":"Good","userId":"u1"}"#;
        let (s, v) = self.c.post_event(&self.token, &[], one);
        assert_eq!(s, 202, "good request after {after}: {v}");
        let (s, v) = self.c.admin("GET", "/v1/environments", None);
        assert_eq!(s, 200, "good admin request after {after}: {v}");
    }
}

#[test]
fn hostile_traffic() {
    let started = Instant::now();
    let mut c = Cluster::new();
    c.set_env("TRIBUTARY_HTTP_HEADER_TIMEOUT_MS", &HEADER_TIMEOUT_MS.to_string());
    c.set_env("TRIBUTARY_HTTP_BODY_TIMEOUT_MS", &BODY_TIMEOUT_MS.to_string());
    c.set_env("TRIBUTARY_HTTP_IDLE_TIMEOUT_MS", &IDLE_TIMEOUT_MS.to_string());
    c.migrate();
    c.start_with("admin", &[("TRIBUTARY_HTTP_MAX_CONNECTIONS", ADMIN_MAX_CONNECTIONS.to_string())]);
    c.start("gateway");
    let (_, token) = c.create_source("seg", "segment");
    // A second source whose requests carry a shared secret: one more secret to look for in logs.
    let (_, signed_token) = c.create_source("hook", "segment");
    let signing_secret = "sig-secret-7d1f0a9c3b";
    c.admin_ok(
        "PATCH",
        "/v1/sources/hook/environments/development",
        Some(&json!({"verification": {"scheme": "shared_secret_header", "header": "x-hook-secret", "secrets": [signing_secret]}})),
    );
    let pid = |c: &Cluster, role: &str| c.procs.iter().find(|(r, _)| r == role).unwrap().1.id();
    let (gateway_pid, admin_pid) = (pid(&c, "gateway"), pid(&c, "admin"));
    let mut run = Run { c, token };
    let (gw, adm) = (run.c.gateway_port, run.c.admin_port);
    let path = run.path();

    let signed = format!("/integrations/receive/{signed_token}");
    assert_eq!(run.c.post_event(&signed_token, &[("x-hook-secret", signing_secret)], br#"{"type":"track","event":"A","userId":"u"}"#).0, 202);
    assert_eq!(run.c.post_event(&signed_token, &[("x-hook-secret", "wrong-secret-value")], br#"{"type":"track","event":"A","userId":"u"}"#).0, 401);
    // Warm up (allocator arenas, producer buffers), then the baseline.
    for _ in 0..20 {
        run.still_serving("warm-up");
    }
    let rss_before = (rss_kib(gateway_pid, "VmRSS:"), rss_kib(admin_pid, "VmRSS:"));

    // --- Slowloris headers: a head trickled a line at a time is cut at the header timeout.
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", gw)).unwrap();
            s.write_all(format!("POST {path} HTTP/1.1\r\nHost: x\r\n").as_bytes()).unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let mut cut_at = None;
    'trickle: for i in 0.. {
        for s in slow.iter_mut() {
            if s.write_all(format!("x-slow-{i}: y\r\n").as_bytes()).is_err() {
                cut_at.get_or_insert(t0.elapsed());
            }
        }
        if cut_at.is_some() || t0.elapsed() > Duration::from_secs(10) {
            break 'trickle;
        }
        std::thread::sleep(Duration::from_millis(250));
        // Writes succeed until the close arrives; a read sees it first.
        s_closed(&mut slow, &mut cut_at, t0);
    }
    let cut_at = cut_at.expect("slowloris connections were never cut off");
    println!("slowloris: cut off after {cut_at:?} (header timeout {HEADER_TIMEOUT_MS} ms)");
    assert!(cut_at >= Duration::from_millis(HEADER_TIMEOUT_MS - 100) && cut_at < Duration::from_millis(HEADER_TIMEOUT_MS + 2000), "{cut_at:?}");
    for s in slow.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(3)), "every slowloris connection is closed");
    }
    run.still_serving("slowloris headers");

    // --- A trickled body: 408 `request_timeout` at the body timeout, then closed.
    for port in [gw, adm] {
        let target = if port == gw { path.clone() } else { "/v1/environments".to_string() };
        let auth = if port == adm { format!("Authorization: Bearer {ADMIN_TOKEN}\r\n") } else { String::new() };
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(format!("POST {target} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 1000\r\n\r\n{{\"type\":").as_bytes()).unwrap();
        let t0 = Instant::now();
        let trickler = {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || {
                while w.write_all(b" ").is_ok() && t0.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        let a = read_answer(&mut s, Duration::from_secs(10));
        let took = t0.elapsed();
        println!("trickled body on {port}: {} {} after {took:?}", a.status, a.body);
        assert_eq!((a.status, code(&a)), (408, "request_timeout"), "{a:?}");
        assert!(a.body["error"]["message"].as_str().unwrap().contains("did not arrive"), "{a:?}");
        assert!(took >= Duration::from_millis(BODY_TIMEOUT_MS - 100) && took < Duration::from_millis(BODY_TIMEOUT_MS + 2000), "{took:?}");
        assert!(closed_within(&mut s, Duration::from_secs(3)), "the connection is closed after the 408");
        drop(s);
        trickler.join().unwrap();
    }
    run.still_serving("trickled bodies");

    // --- A flood of idle connections: the gateway keeps serving; each is reaped at the header
    // timeout. The admin API (max_connections 40) answers the ones over its limit 503.
    let mut idle: Vec<TcpStream> = (0..600).map(|_| TcpStream::connect(("127.0.0.1", gw)).unwrap()).collect();
    let mut over: Vec<TcpStream> = (0..ADMIN_MAX_CONNECTIONS + 20).map(|_| TcpStream::connect(("127.0.0.1", adm)).unwrap()).collect();
    let flood_at = Instant::now();
    let one = br#"{"type":"track","event":"During","userId":"u1"}"#;
    assert_eq!(run.c.post_event(&run.token, &[], one).0, 202, "a good request during the flood");
    let refused: Vec<Answer> = over.iter_mut().map(|s| read_answer(s, Duration::from_millis(300))).filter(|a| a.status != 0).collect();
    println!("admin flood: {} of {} connections refused", refused.len(), over.len());
    assert!(refused.len() >= 20, "connections over the admin limit are refused");
    for a in &refused {
        assert_eq!((a.status, code(a)), (503, "too_many_connections"), "{a:?}");
        assert!(a.head.to_ascii_lowercase().contains("retry-after: 1"), "{a:?}");
    }
    let reaped = idle.iter_mut().chain(over.iter_mut()).map(|s| closed_within(s, Duration::from_millis(HEADER_TIMEOUT_MS + 3000))).filter(|&c| c).count();
    println!("idle flood: {reaped} of {} connections reaped within {:?}", idle.len() + over.len(), flood_at.elapsed());
    assert_eq!(reaped, idle.len() + over.len(), "every idle connection is closed by the server");
    drop((idle, over));
    run.still_serving("an idle-connection flood");

    // --- Heads over the limit: 431 in the error shape; far over: refused unread.
    let big = "a".repeat(20 * 1024);
    let a = post_raw(gw, &path, &format!("x-big: {big}\r\n"), b"{}");
    assert_eq!((a.status, code(&a)), (431, "headers_too_large"), "{a:?}");
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let a = post_raw(adm, "/v1/sources", &many, b"{}");
    assert_eq!((a.status, code(&a)), (431, "headers_too_large"), "{a:?}");
    let huge = "a".repeat(64 * 1024);
    let a = post_raw(gw, &path, &format!("x-huge: {huge}\r\n"), b"{}");
    assert!(a.status == 431 || a.status == 0, "far over the limit: 431 or closed, got {a:?}");
    run.still_serving("oversized heads");

    // --- A 10 KB token in the path: an unknown token, nothing more.
    let long_token = format!("tok_{}", "x".repeat(10 * 1024));
    let a = post_raw(gw, &format!("/integrations/receive/{long_token}"), "", br#"{"type":"track","event":"A","userId":"u"}"#);
    assert_eq!((a.status, code(&a)), (404, "unknown_token"), "{a:?}");

    // --- Bodies: just over the limit, invalid UTF-8, deep nesting, wrong types, empty.
    let mut over_limit = br#"{"type":"track","event":"A","userId":"u","properties":{"p":""#.to_vec();
    over_limit.resize(MAX_BODY - 3, b'x');
    over_limit.extend_from_slice(br#""}}"#);
    assert_eq!(over_limit.len(), MAX_BODY);
    over_limit.insert(over_limit.len() - 3, b'x');
    let a = post_raw(gw, &path, "", &over_limit);
    assert_eq!((a.status, code(&a)), (413, "payload_too_large"), "{} {}", a.status, a.body);
    over_limit.remove(over_limit.len() - 4);
    // Exactly at the limit the body is read, but one event that large is over Kafka's
    // message.max.bytes: a 413 of its own, not a 503 the sender would retry forever.
    let a = post_raw(gw, &path, "", &over_limit);
    assert_eq!((a.status, code(&a)), (413, "event_too_large"), "exactly at the limit: {}", a.body);
    let a = post_raw(adm, "/v1/sources", &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"), &vec![b' '; (10 << 20) + 1]);
    assert_eq!((a.status, code(&a)), (413, "payload_too_large"), "admin: {a:?}");
    drop(over_limit);

    let a = post_raw(gw, &path, "", b"{\"type\":\"track\",\"event\":\"\xff\xfe\",\"userId\":\"u\"}");
    assert_eq!((a.status, code(&a)), (400, "invalid_json"), "invalid UTF-8: {a:?}");

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let a = post_raw(gw, &path, "", deep.as_bytes());
    assert_eq!(a.status, 400, "10,000-deep array: {a:?}");
    let deep_prop = format!(r#"{{"type":"track","event":"A","userId":"u","properties":{{"p":{}1{}}}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let a = post_raw(gw, &path, "", deep_prop.as_bytes());
    assert_eq!((a.status, code(&a)), (400, "too_deep"), "10,000-deep property: {a:?}");
    let deep_obj = format!("{}{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let a = post_raw(adm, "/v1/sources", &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"), deep_obj.as_bytes());
    assert_eq!((a.status, code(&a)), (400, "invalid_json"), "admin, 10,000-deep object: {a:?}");
    run.still_serving("deep nesting");

    for (ct, body) in [
        ("application/x-www-form-urlencoded", &b"type=track&event=A&userId=u"[..]),
        ("multipart/form-data; boundary=zz", &b"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--zz--\r\n"[..]),
        ("application/xml", &b"<event type=\"track\"/>"[..]),
    ] {
        let a = post_raw(gw, &path, &format!("Content-Type: {ct}\r\n"), body);
        assert_eq!((a.status, code(&a)), (400, "invalid_json"), "{ct}: {a:?}");
    }
    // The body decides, not the label: JSON sent as text/plain (analytics.js does) is accepted.
    let a = post_raw(gw, &path, "Content-Type: text/plain\r\n", br#"{"type":"track","event":"A","userId":"u"}"#);
    assert_eq!(a.status, 202, "{a:?}");

    let digits = "9".repeat(100);
    let huge_numbers = format!(r#"{{"type":"track","event":"Huge","userId":"u-huge","properties":{{"e":1e400,"i":{digits},"n":-{digits}.5e-400}}}}"#);
    let a = post_raw(gw, &path, "", huge_numbers.as_bytes());
    assert_eq!(a.status, 202, "huge numbers are kept as sent: {a:?}");
    // Everything is in the topic already: read it all (5 s) and find the record.
    let raw = tributary_tests::read_topic(&run.c.topic("raw"), Duration::from_secs(5), usize::MAX);
    let kept = raw.iter().map(|(_, v)| v.to_string()).find(|v| v.contains("u-huge"));
    let kept = kept.unwrap_or_else(|| panic!("no record of the huge-numbers event among {}", raw.len()));
    // (this test's own parse writes 1e400 back as 1e+400; the digits are what matter)
    let exact = (kept.contains("1e400") || kept.contains("1e+400")) && kept.contains(&format!(":{digits},")) && kept.contains(&format!("-{digits}.5e-400"));
    assert!(exact, "the raw record keeps each number as sent, not rounded to a float: {kept}");

    for body in [&b""[..], b"   "] {
        let a = post_raw(gw, &path, "", body);
        assert_eq!((a.status, code(&a)), (400, "invalid_json"), "empty body {body:?}: {a:?}");
    }
    let a = post_raw(adm, "/v1/sources", &format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"), b"");
    assert_eq!((a.status, code(&a)), (400, "invalid_json"), "admin, empty body: {a:?}");
    run.still_serving("malformed bodies");

    // --- Gzip bombs: 10 MB compressed (over the limit as sent) and 256 KB → 256 MB.
    let bomb = gzip_zeros(256);
    println!("gzip bomb: {} bytes compressed, 256 MiB inflated", bomb.len());
    let a = post_raw(gw, &path, "Content-Encoding: gzip\r\n", &bomb);
    assert_eq!((a.status, code(&a)), (413, "payload_too_large"), "{a:?}");
    let mut big_bomb = Vec::with_capacity(10 << 20);
    while big_bomb.len() < 10 << 20 {
        big_bomb.extend_from_slice(&bomb);
    }
    let a = post_raw(gw, &path, "Content-Encoding: gzip\r\n", &big_bomb);
    assert_eq!((a.status, code(&a)), (413, "payload_too_large"), "{} {}", a.status, a.body);
    for _ in 0..5 {
        let a = post_raw(gw, &path, "Content-Encoding: gzip\r\n", &bomb);
        assert_eq!(a.status, 413);
    }
    drop(big_bomb);
    run.still_serving("gzip bombs");

    // --- HTTP/2: streams opened and abandoned, a rapid-reset burst, an idle connection.
    // One thread: the attacker's frames are queued while its loop runs and reach the server in
    // bursts, as a real rapid-reset attack sends them. On two threads the connection task wrote
    // them one by one and, on a quiet machine, the server accepted each reset stream before the
    // next came, so the burst never looked like one (CI: 2,000 streams, no GOAWAY).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(h2_attacks(gw, path.clone()));
    run.still_serving("HTTP/2 abuse");

    // --- Memory: bounded through all of it.
    let rss_after = (rss_kib(gateway_pid, "VmRSS:"), rss_kib(admin_pid, "VmRSS:"));
    let peak = (rss_kib(gateway_pid, "VmHWM:"), rss_kib(admin_pid, "VmHWM:"));
    println!("RSS KiB gateway {} -> {} (peak {}), admin {} -> {} (peak {})", rss_before.0, rss_after.0, peak.0, rss_before.1, rss_after.1, peak.1);
    assert!(rss_after.0 < rss_before.0 + 96 * 1024, "gateway RSS grew from {} to {} KiB", rss_before.0, rss_after.0);
    assert!(rss_after.1 < rss_before.1 + 96 * 1024, "admin RSS grew from {} to {} KiB", rss_before.1, rss_after.1);
    // 256 MiB inflated would show here; 8 MiB bodies read a few at a time do not.
    assert!(peak.0 < 200 * 1024, "gateway peak RSS {} KiB: a bomb was inflated", peak.0);

    // --- The admin token: 401 in the shape, and no timing difference to exploit.
    let (s, v) = http::request(adm, "GET", "/v1/sources", &[], None);
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    assert!(v["error"]["message"].is_string() && v["error"].get("details").is_some(), "{v}");
    let nearly = format!("{}X", &ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]);
    let (s, v) = http::request(adm, "GET", "/v1/sources", &[("authorization", &format!("Bearer {nearly}"))], None);
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    token_timing(adm, &nearly);

    // --- No secret of this run in any log any of its processes wrote.
    let name = run.c.name.clone();
    drop(run); // stops the processes: their last lines are written too
    let log_dir = tributary_tests::binary().parent().unwrap().join("e2e-logs");
    let logs: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&name))
        .collect();
    assert!(logs.len() >= 2, "the gateway's and the admin API's logs: {logs:?}");
    let secrets = [ADMIN_TOKEN, path.trim_start_matches("/integrations/receive/"), signed.trim_start_matches("/integrations/receive/"), signing_secret, &long_token, &nearly];
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        for secret in secrets {
            assert!(!text.contains(secret), "{} contains a secret ({}…)", log.display(), &secret[..6]);
        }
    }
    println!("{} logs checked for {} secrets; whole test {:?}", logs.len(), secrets.len(), started.elapsed());
}

/// Record when the first slowloris connection sees the server's close.
fn s_closed(slow: &mut [TcpStream], cut_at: &mut Option<Duration>, t0: Instant) {
    let mut buf = [0u8; 512];
    for s in slow.iter_mut() {
        s.set_nonblocking(true).unwrap();
        let closed = matches!(s.read(&mut buf), Ok(0)) || matches!(s.read(&mut buf), Err(e) if e.kind() != std::io::ErrorKind::WouldBlock);
        s.set_nonblocking(false).unwrap();
        if closed {
            cut_at.get_or_insert(t0.elapsed());
        }
    }
}

async fn h2_attacks(port: u16, path: String) {
    let uri = format!("http://127.0.0.1:{port}{path}");
    let connect = || async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let done = tokio::spawn(conn);
        (client, done)
    };
    let request = |uri: &str| http1::Request::post(uri).body(()).unwrap();

    // Streams opened and abandoned: each is a request whose body never comes; the server answers
    // each 408 at the body timeout (or refuses streams over its per-connection limit).
    let (client, _conn) = connect().await;
    let mut client = client.ready().await.unwrap();
    let mut pending = Vec::new();
    for _ in 0..50 {
        let (resp, mut body) = client.send_request(request(&uri), false).unwrap();
        body.send_data(bytes::Bytes::from_static(b"{\"type\":"), false).unwrap();
        pending.push((resp, body)); // the body stays open and the stream is never finished
        client = client.ready().await.unwrap();
    }
    let t0 = Instant::now();
    let mut timed_out = 0;
    for (resp, _body) in pending {
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_millis(BODY_TIMEOUT_MS + 3000), resp).await {
            if r.status() == 408 {
                timed_out += 1;
            }
        }
    }
    println!("h2 abandoned streams: {timed_out} of 50 answered 408 after {:?}", t0.elapsed());
    assert_eq!(timed_out, 50, "every abandoned stream is answered 408");

    // Rapid reset: streams opened and reset at once, over and over; the server sends GOAWAY
    // (or simply keeps up), and stays up.
    let (client, conn) = connect().await;
    let mut client = client;
    let mut sent = 0;
    for _ in 0..2000 {
        let Ok(ready) = client.ready().await else { break };
        client = ready;
        match client.send_request(request(&uri), false) {
            Ok((_resp, mut body)) => body.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        sent += 1;
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    println!("h2 rapid reset: {sent} streams reset; connection ended by the server: {}", ended.is_ok());
    // What counts is that the server ends the connection; how many resets the client queued
    // before it noticed depends on when its connection task ran.
    assert!(ended.is_ok(), "a rapid-reset burst ends in GOAWAY ({sent} streams sent)");

    // An idle HTTP/2 connection: GOAWAY at the idle timeout.
    let (client, conn) = connect().await;
    let t0 = Instant::now();
    let ended = tokio::time::timeout(Duration::from_millis(IDLE_TIMEOUT_MS + 4000), conn).await;
    drop(client);
    println!("h2 idle connection closed after {:?}", t0.elapsed());
    assert!(ended.is_ok(), "an idle HTTP/2 connection is closed by the server");
    assert!(t0.elapsed() >= Duration::from_millis(IDLE_TIMEOUT_MS - 100));
}

/// A wrong token sharing all but the last byte with the real one versus one wrong from the
/// first byte: their median answer times must not differ (interleaved, over one keep-alive
/// connection each, so the network and scheduling noise hits both alike).
fn token_timing(port: u16, nearly: &str) {
    let far = format!("X{}", &ADMIN_TOKEN[1..]);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_nodelay(true).unwrap();
    let mut time = |token: &str| {
        let req = format!("GET /v1/sources HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
        let t = Instant::now();
        conn.write_all(req.as_bytes()).unwrap();
        let a = read_answer(&mut conn, Duration::from_secs(5));
        let took = t.elapsed();
        assert_eq!(a.status, 401);
        took
    };
    let (mut near_t, mut far_t) = (Vec::new(), Vec::new());
    for i in 0..800 {
        // alternate which goes first, so neither always gets the warm cache
        if i % 2 == 0 {
            near_t.push(time(nearly));
            far_t.push(time(&far));
        } else {
            far_t.push(time(&far));
            near_t.push(time(nearly));
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (near_m, far_m) = (median(&mut near_t), median(&mut far_t));
    let diff = near_m.abs_diff(far_m);
    println!("token check: median {near_m:?} (all but the last byte right) vs {far_m:?} (first byte wrong), difference {diff:?}");
    // The compare itself takes nanoseconds either way; noise on a shared machine is tens of
    // microseconds. A leak worth exploiting over a network would show here as a consistent gap.
    assert!(diff < far_m.max(near_m) / 5 + Duration::from_micros(100), "timing differs: {near_m:?} vs {far_m:?}");
}
