//! The HTTP sink: workflow triggers, cancels and identifies sent to Knock's REST API (or
//! anything that speaks it).
//!
//! - `POST {base}/v1/workflows/{key}/trigger` with `Idempotency-Key: <action id>`: the action
//!   id is derived from the event and the mapping, so a redelivered action is recognised by
//!   the receiver even if our own `success` log write was lost in a crash.
//! - `POST {base}/v1/workflows/{key}/cancel`, `PUT {base}/v1/users/{id}`.
//! - `POST` / `DELETE {base}/v1/audiences/{key}/members` with
//!   `{"members": [{"user": {"id": ...}, "tenant": ...}]}` (Knock's Audiences API) and the
//!   action id as `Idempotency-Key` (Knock ignores it there; a compatible receiver may not).
//!
//! Retries: network errors, 5xx and 429 are retried with exponential backoff (429 waits for
//! `Retry-After` when given, capped); any other 4xx fails at once (retrying cannot fix it).

use serde_json::{json, Value};
use std::time::Duration;

pub struct HttpSink {
    client: reqwest::Client,
    max_attempts: u32,
    backoff: Duration,
}

/// How a sink request ended.
#[derive(Debug)]
pub enum SinkResult {
    Delivered { status: u16, body: Value, attempts: u32 },
    Failed { error: String, attempts: u32 },
}

impl HttpSink {
    pub fn new(timeout: Duration, max_attempts: u32, backoff: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        crate::metrics::init_sink_metrics();
        Ok(HttpSink { client, max_attempts: max_attempts.max(1), backoff })
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        api_key: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> SinkResult {
        let bytes = body.to_string();
        let mut delay = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            let mut req = self
                .client
                .request(method.clone(), url)
                .header("content-type", "application/json")
                .body(bytes.clone());
            if !api_key.is_empty() {
                req = req.bearer_auth(api_key);
            }
            if let Some(k) = idempotency_key {
                req = req.header("idempotency-key", k);
            }
            if attempt > 1 {
                crate::metrics::SINK_RETRIES.inc();
            }
            let started = std::time::Instant::now();
            let sent = req.send().await;
            crate::metrics::SINK_SECONDS.observe(started.elapsed().as_secs_f64());
            let outcome = match &sent {
                Ok(r) if r.status().is_success() => "success",
                Ok(r) if r.status().as_u16() == 429 => "throttled",
                Ok(r) if r.status().is_server_error() => "server_error",
                Ok(_) => "client_error",
                Err(_) => "network_error",
            };
            crate::metrics::SINK_REQUESTS.with_label_values(&[outcome]).inc();
            let wait = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(30)));
                    let text = resp.text().await.unwrap_or_default();
                    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| json!(text));
                    match status {
                        200..=299 => return SinkResult::Delivered { status, body, attempts: attempt },
                        429 => {
                            last = format!("429 Too Many Requests: {text}");
                            retry_after.unwrap_or(delay)
                        }
                        500..=599 => {
                            last = format!("{status}: {text}");
                            delay
                        }
                        _ => return SinkResult::Failed { error: format!("{status}: {text}"), attempts: attempt },
                    }
                }
                Err(e) => {
                    last = format!("request failed: {e}");
                    delay
                }
            };
            if attempt < self.max_attempts {
                tracing::debug!(url, attempt, error = %last, "sink request failed; retrying");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
        SinkResult::Failed { error: format!("gave up after {} attempts: {last}", self.max_attempts), attempts: self.max_attempts }
    }
}

/// `base` + `/v1/...`, with each path segment percent-encoded.
pub fn url(base: &str, segments: &[&str]) -> String {
    let mut u = base.trim_end_matches('/').to_string();
    u.push_str("/v1");
    for s in segments {
        u.push('/');
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                u.push(b as char);
            } else {
                u.push_str(&format!("%{b:02X}"));
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_are_encoded() {
        assert_eq!(super::url("http://x/", &["workflows", "order completed", "trigger"]), "http://x/v1/workflows/order%20completed/trigger");
        assert_eq!(super::url("http://x", &["users", "a/b"]), "http://x/v1/users/a%2Fb");
    }
}
