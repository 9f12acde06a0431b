//! The HTTP trigger sink of the drill: a local server that speaks enough of Knock's API for
//! the executor's HTTP sink, answers as the fault of the moment says (200, 500, 429 with
//! Retry-After, or no answer at all), and records every call with what it answered. The
//! oracle counts the calls it *accepted* (2xx) per idempotency key: a second accepted call
//! for one key is an action fired twice.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Ok = 0,
    Fail500 = 1,
    Throttle429 = 2,
    /// Read the request, answer nothing until the client gives up (its timeout), then close.
    Hang = 3,
}

#[derive(Debug, Clone)]
pub struct Call {
    pub path: String,
    pub idempotency_key: String,
    pub body: Value,
    /// What the sink answered (0: nothing, it hung).
    pub status: u16,
    pub at: Instant,
}

pub struct Sink {
    pub port: u16,
    mode: Arc<AtomicU8>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mode, calls) = (Arc::new(AtomicU8::new(Mode::Ok as u8)), Arc::new(Mutex::new(Vec::new())));
        let (m, c) = (mode.clone(), calls.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (m, c) = (m.clone(), c.clone());
                std::thread::spawn(move || serve(stream, &m, &c));
            }
        });
        Sink { port, mode, calls }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn serve(mut stream: std::net::TcpStream, mode: &AtomicU8, calls: &Mutex<Vec<Call>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        let (mut len, mut key) = (0usize, String::new());
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "idempotency-key" => key = v.trim().to_string(),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let now = mode.load(Ordering::SeqCst);
        let status = match now {
            1 => 500,
            2 => 429,
            3 => 0,
            _ => 200,
        };
        calls.lock().unwrap().push(Call { path, idempotency_key: key, body, status, at: Instant::now() });
        if status == 0 {
            // Hang past any sane client timeout, then drop the connection unanswered.
            std::thread::sleep(Duration::from_secs(30));
            return;
        }
        let payload = if status == 200 { r#"{"workflow_run_id":"run"}"# } else { r#"{"code":"chaos"}"# };
        let extra = if status == 429 { "retry-after: 1\r\n" } else { "" };
        let resp = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n{payload}",
            payload.len()
        );
        if stream.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}
