//! A minimal W3C WebDriver client over the tests' own HTTP client: start `chromedriver`, open
//! one headless Chromium session, find elements, click, type, read, take screenshots.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use std::io::{Read, Write};
use std::net::TcpStream;
use tributary_tests::free_port;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// An element reference.
#[derive(Clone, Debug)]
pub struct El(String);

pub struct Browser {
    port: u16,
    driver: Child,
    session: String,
    shots: PathBuf,
    shot_count: std::cell::Cell<usize>,
    /// The last refusal of a click that is being retried, for the timeout's message.
    last_error: std::cell::RefCell<String>,
}

/// One request to chromedriver. Not the tests' shared client: chromedriver keeps the
/// connection open whatever `Connection: close` says, so the answer is read by its
/// `Content-Length`, not to the end of the stream.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let (split, length) = loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("connection closed before the answer's headers"));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while raw.len() < split + length {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let status = String::from_utf8_lossy(&raw[..split]).split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let v = serde_json::from_slice(&raw[split..(split + length).min(raw.len())]).unwrap_or(Value::Null);
    Ok((status, v))
}

fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).is_file().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

/// Chromium and its driver: `CHROME_BIN` / `CHROMEDRIVER`, else Debian's names. Panics naming
/// the install command when either is missing.
pub fn find_browser() -> (PathBuf, PathBuf) {
    let chrome = std::env::var("CHROME_BIN")
        .ok()
        .and_then(|c| on_path(&c))
        .or_else(|| ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|n| on_path(n)));
    let driver = std::env::var("CHROMEDRIVER").ok().and_then(|c| on_path(&c)).or_else(|| on_path("chromedriver"));
    match (chrome, driver) {
        (Some(c), Some(d)) => (c, d),
        (c, d) => panic!(
            "the console's browser test needs headless Chromium and its WebDriver, and {} missing.\n\
             Install them (Debian): `{INSTALL}`\n\
             (or point CHROME_BIN and CHROMEDRIVER at them)",
            match (c, d) {
                (None, None) => "both are",
                (None, _) => "chromium is",
                _ => "chromedriver (package chromium-driver) is",
            }
        ),
    }
}

impl Browser {
    /// Start chromedriver and a headless Chromium of `width`×`height`.
    pub fn start(shots: PathBuf, width: u32, height: u32) -> Browser {
        let (chrome, driver_bin) = find_browser();
        std::fs::create_dir_all(&shots).unwrap();
        let port = free_port();
        let log = std::fs::File::create(shots.join("chromedriver.log")).unwrap();
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e} (install: `{INSTALL}`)", driver_bin.display()));
        let mut b = Browser { port, driver, session: String::new(), shots, shot_count: std::cell::Cell::new(0), last_error: Default::default() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok((200, v)) = request(port, "GET", "/status", None) {
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver on port {port} not ready after 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chrome.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--lang=en-US",
                         format!("--window-size={width},{height}")],
            },
        }}});
        let (status, v) = request(port, "POST", "/session", Some(&caps)).expect("chromedriver answers");
        assert_eq!(status, 200, "chromedriver could not start Chromium ({}): {v}", chrome.display());
        b.session = v["value"]["sessionId"].as_str().expect("session id").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let body = body.or_else(|| (method == "POST").then(|| json!({})));
        let (status, v) = request(self.port, method, &format!("/session/{}{path}", self.session), body.as_ref())
            .unwrap_or_else(|e| panic!("chromedriver {method} {path}: {e}"));
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, path, body.clone()).unwrap_or_else(|e| panic!("WebDriver {method} {path} {body:?}: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.ok("POST", "/url", Some(json!({"url": url})));
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.ok("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    fn find_by(&self, using: &str, value: &str) -> Option<El> {
        self.call("POST", "/element", Some(json!({"using": using, "value": value})))
            .ok()
            .and_then(|v| v[ELEMENT].as_str().map(|s| El(s.to_string())))
    }

    pub fn find_all(&self, css: &str) -> Vec<El> {
        self.call("POST", "/elements", Some(json!({"using": "css selector", "value": css})))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|s| El(s.to_string())))
            .collect()
    }

    pub fn find(&self, css: &str) -> Option<El> {
        self.find_by("css selector", css)
    }

    /// Poll until `f` answers, or fail with what was awaited, the page's text and a screenshot.
    pub fn wait_for<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Browser) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("FAILED");
                let text = self.exec("return document.body.innerText", json!([]));
                let last = self.last_error.take();
                panic!(
                    "timed out after {timeout:?} waiting for {what} (screenshot {}){}\npage text:\n{}",
                    shot.display(),
                    if last.is_empty() { String::new() } else { format!("\nlast refusal: {last}") },
                    text.as_str().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The element `css`, once it is there and displayed.
    pub fn wait(&self, css: &str) -> El {
        self.wait_for(&format!("`{css}`"), Duration::from_secs(15), |b| b.find(css).filter(|e| b.displayed(e)))
    }

    fn displayed_by_xpath(&self, xp: &str) -> Option<El> {
        self.call("POST", "/elements", Some(json!({"using": "xpath", "value": xp})))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e[ELEMENT].as_str().map(|s| El(s.to_string())))
            .find(|e| self.displayed(e))
    }

    /// Click the first displayed element matching an XPath expression, once there is one. A
    /// page that re-renders between finding and clicking (stale element) is tried again.
    pub fn tap_xpath(&self, xp: &str) {
        self.wait_for(&format!("`{xp}` to click"), Duration::from_secs(15), |b| {
            b.displayed_by_xpath(xp).and_then(|e| b.try_click(&e))
        })
    }

    /// Click a button or link by its visible label (the first displayed one).
    pub fn press(&self, label: &str) {
        self.tap_xpath(&format!("//*[self::button or self::a][normalize-space()='{label}']"))
    }

    /// Click the first displayed element matching `css`, once there is one.
    pub fn tap(&self, css: &str) {
        self.wait_for(&format!("`{css}` to click"), Duration::from_secs(15), |b| {
            b.find(css).filter(|e| b.displayed(e)).and_then(|e| b.try_click(&e))
        })
    }

    /// Wait until the text of `css` contains `needle`; returns that text.
    pub fn wait_text(&self, css: &str, needle: &str, timeout: Duration) -> String {
        self.wait_for(&format!("`{css}` to contain {needle:?}"), timeout, |b| {
            b.find_all(css).iter().map(|e| b.text(e)).find(|t| t.contains(needle))
        })
    }

    pub fn displayed(&self, e: &El) -> bool {
        self.call("GET", &format!("/element/{}/displayed", e.0), None).map(|v| v == true).unwrap_or(false)
    }

    fn try_click(&self, e: &El) -> Option<()> {
        match self.call("POST", &format!("/element/{}/click", e.0), None) {
            Ok(_) => Some(()),
            Err(v) => {
                *self.last_error.borrow_mut() = v["message"].as_str().unwrap_or_default().lines().next().unwrap_or_default().to_string();
                None
            }
        }
    }

    pub fn click(&self, e: &El) {
        self.ok("POST", &format!("/element/{}/click", e.0), None);
    }

    pub fn clear(&self, e: &El) {
        self.ok("POST", &format!("/element/{}/clear", e.0), None);
    }

    /// Type into an element (WebDriver key codes work: `\u{E007}` is Enter).
    pub fn keys(&self, e: &El, text: &str) {
        self.ok("POST", &format!("/element/{}/value", e.0), Some(json!({"text": text})));
    }

    pub fn text(&self, e: &El) -> String {
        self.call("GET", &format!("/element/{}/text", e.0), None).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    }

    pub fn prop(&self, e: &El, name: &str) -> Value {
        self.ok("GET", &format!("/element/{}/property/{name}", e.0), None)
    }

    /// The same, `None` when the element is gone (the page re-rendered) meanwhile.
    pub fn try_prop(&self, e: &El, name: &str) -> Option<Value> {
        self.call("GET", &format!("/element/{}/property/{name}", e.0), None).ok()
    }

    pub fn attr(&self, e: &El, name: &str) -> Option<String> {
        self.ok("GET", &format!("/element/{}/attribute/{name}", e.0), None).as_str().map(str::to_string)
    }

    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.ok("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Choose the option of `select_css` whose text contains `text`.
    pub fn choose(&self, select_css: &str, text: &str) {
        let opt = self.wait_for(&format!("an option {text:?} in `{select_css}`"), Duration::from_secs(15), |b| {
            b.find_all(&format!("{select_css} option")).into_iter().find(|o| b.text(o).contains(text))
        });
        self.click(&opt);
    }

    /// The browser's console messages so far (SEVERE ones are script errors, CSP refusals,
    /// failed loads).
    pub fn console_log(&self) -> Vec<Value> {
        self.call("POST", "/se/log", Some(json!({"type": "browser"}))).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
    }

    /// Save a screenshot of the viewport as `NN-name.png`; returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        self.shot_count.set(self.shot_count.get() + 1);
        let path = self.shots.join(format!("{:02}-{name}.png", self.shot_count.get()));
        if let Ok(v) = self.call("GET", "/screenshot", None) {
            if let Some(b64) = v.as_str() {
                let png = base64::engine::general_purpose::STANDARD.decode(b64).expect("screenshot is base64");
                std::fs::write(&path, png).unwrap();
            }
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = request(self.port, "DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
