//! Serving a router over TCP with the limits a public endpoint needs. Every HTTP server of every
//! role goes through [`serve`]: the gateway, the admin API and the health endpoints.
//!
//! `axum::serve` sets no timer: a client could trickle a request head forever, keep an idle
//! connection, or open HTTP/2 connections and do nothing with them, and any number of such
//! connections would be accepted. Here, per `http.*` (see `config::HttpConfig`):
//! - the first bytes and every request head must arrive within `header_timeout_ms` (this also
//!   reaps idle HTTP/1 keep-alive connections); otherwise the connection is closed;
//! - each request body must arrive within `body_timeout_ms` ([`DeadlineBody`]; handlers answer 408);
//! - an HTTP/2 connection with no request in flight for `idle_timeout_ms` gets GOAWAY;
//! - heads over `max_header_bytes` / `max_headers` get 431 in the error shape, and beyond twice
//!   that hyper refuses to read them (431 with no body, HTTP/1; the protocol's own refusal, h2);
//! - at most `max_connections` are open; one more is answered 503 and closed;
//! - HTTP/2 streams are capped per connection, and so are streams the client resets before
//!   they are answered (the "rapid reset" attack, CVE-2023-44487), past which it gets GOAWAY.
//!
//! Each connection the server closes is counted in
//! `tributary_http_connections_closed_total{server, reason}`.

use crate::body_deadline::DeadlineBody;
use crate::config::HttpConfig;
use crate::http_errors::error_response;
use crate::Shutdown;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts};
use serde_json::Value;
use std::convert::Infallible;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower_service::Service;

static CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    crate::health::register(
        IntCounterVec::new(
            Opts::new(
                "tributary_http_connections_closed_total",
                "Connections (body_timeout: requests) the server cut off, by reason: header_timeout, body_timeout, \
                 idle (HTTP/2), limit (over http.max_connections), headers_too_large, shutdown (open at the drain deadline)",
            ),
            &["server", "reason"],
        )
        .unwrap(),
    )
});

static OPEN: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    crate::health::register(
        IntGaugeVec::new(Opts::new("tributary_http_connections_open", "Open connections per server"), &["server"]).unwrap(),
    )
});

fn closed(server: &str, reason: &str) {
    CLOSED.with_label_values(&[server, reason]).inc();
}

/// [`HttpConfig`] as the server uses it.
struct Limits {
    server: &'static str,
    header: Duration,
    body: Duration,
    idle: Duration,
    max_connections: usize,
    head_bytes: usize,
    headers: usize,
    streams: u32,
    body_timeouts: &'static IntCounter,
}

impl Limits {
    fn new(server: &'static str, c: &HttpConfig) -> Limits {
        Limits {
            server,
            header: Duration::from_millis(c.header_timeout_ms),
            body: Duration::from_millis(c.body_timeout_ms),
            idle: Duration::from_millis(c.idle_timeout_ms),
            max_connections: c.max_connections,
            head_bytes: c.max_header_bytes,
            headers: c.max_headers,
            streams: c.max_concurrent_streams,
            // One counter per server for the life of the process, handed to every body.
            body_timeouts: Box::leak(Box::new(CLOSED.with_label_values(&[server, "body_timeout"]))),
        }
    }

    /// How long a connection may take to finish once shutdown started: a request that is
    /// being read gets its full head and body time.
    fn drain(&self) -> Duration {
        self.header + self.body
    }
}

/// Serve `app` on `listener` until `shutdown`, then stop accepting and let open connections
/// finish (at most `header_timeout + body_timeout`). `server` names it in the metrics.
pub async fn serve(listener: TcpListener, app: Router, server: &'static str, config: &HttpConfig, shutdown: Shutdown) -> io::Result<()> {
    let limits = Arc::new(Limits::new(server, config));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut connections = tokio::task::JoinSet::new();
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            // Reap finished connection tasks as they end (the set would grow otherwise).
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(connection(stream, app.clone(), limits.clone(), shutdown.clone(), permit));
                    }
                    Err(_) => refuse(stream, server),
                },
                // Out of file descriptors, mostly: wait for some to close rather than spin,
                // and say so now and then (a flood must not flood the log too).
                Err(e) => {
                    if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                        tracing::warn!(server, error = %e, "cannot accept connections; retrying");
                        last_accept_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection over the limit: a 503 in the error shape, best effort (never waiting on the
/// client), and closed.
fn refuse(stream: TcpStream, server: &str) {
    static ANSWER: LazyLock<String> = LazyLock::new(|| {
        let body = serde_json::json!({"error": {"code": "too_many_connections", "message": "the server has too many open connections; retry shortly", "details": null}}).to_string();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    });
    let _ = stream.try_write(ANSWER.as_bytes());
    closed(server, "limit");
}

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn connection(mut stream: TcpStream, app: Router, limits: Arc<Limits>, shutdown: Shutdown, _permit: OwnedSemaphorePermit) {
    let server = limits.server;
    let open = OPEN.with_label_values(&[server]);
    open.inc();
    let _open = scopeguard(move || open.dec());
    // Requests and answers are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    let mut prefix = Vec::with_capacity(H2_PREFACE.len());
    let h2 = tokio::select! {
        sniffed = tokio::time::timeout(limits.header, sniff(&mut stream, &mut prefix)) => match sniffed {
            Ok(Ok(Some(h2))) => h2,
            Ok(_) => return, // closed or broken before a request began
            Err(_) => return closed(server, "header_timeout"),
        },
        _ = shutdown.wait() => return,
    };
    let io = TokioIo::new(Rewind { prefix, pos: 0, inner: stream });
    let activity = Arc::new(Activity::new());
    let svc = service(app, limits.clone(), activity.clone());
    if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(limits.streams)
            // Streams reset by the client before they were answered, at most this many
            // pending at once: the rapid-reset attack. h2's default, stated here on purpose.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .max_header_list_size((2 * limits.head_bytes) as u32);
        let conn = pin!(b.serve_connection(io, svc));
        drive(conn, |c| c.graceful_shutdown(), Some(activity), &limits, &shutdown).await;
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(limits.header)
            // The hard caps: a head this large is not even buffered (hyper answers 431).
            .max_buf_size(2 * limits.head_bytes)
            .max_headers(2 * limits.headers);
        let conn = pin!(b.serve_connection(io, svc).with_upgrades());
        drive(conn, |c| c.graceful_shutdown(), None, &limits, &shutdown).await;
    }
}

/// Run a connection to its end: gracefully on shutdown (cut at the drain deadline) and, for
/// HTTP/2, once idle for `idle_timeout`.
async fn drive<F>(mut conn: Pin<&mut F>, graceful: impl Fn(Pin<&mut F>), idle: Option<Arc<Activity>>, limits: &Limits, shutdown: &Shutdown)
where
    F: std::future::Future<Output = Result<(), hyper::Error>>,
{
    let server = limits.server;
    let mut deadline: Option<Instant> = None;
    let check_every = (limits.idle / 4).max(Duration::from_millis(25));
    let mut idle_check = tokio::time::interval_at(Instant::now() + check_every, check_every);
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    if e.is_timeout() {
                        closed(server, "header_timeout");
                    } else if e.is_parse_too_large() {
                        closed(server, "headers_too_large");
                    }
                }
                return;
            }
            _ = shutdown.wait(), if deadline.is_none() => {
                graceful(conn.as_mut());
                deadline = Some(Instant::now() + limits.drain());
            }
            _ = idle_check.tick(), if idle.is_some() && deadline.is_none() => {
                if idle.as_ref().is_some_and(|a| a.idle_for() >= limits.idle) {
                    closed(server, "idle");
                    graceful(conn.as_mut());
                    // GOAWAY sent; a client that does not close gets a moment, not more.
                    deadline = Some(Instant::now() + Duration::from_secs(1));
                }
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                closed(server, "shutdown");
                return;
            }
        }
    }
}

/// Read until the bytes tell HTTP/2's preface from an HTTP/1 request (at most 24 bytes).
/// `None`: the client closed first.
async fn sniff(stream: &mut TcpStream, prefix: &mut Vec<u8>) -> io::Result<Option<bool>> {
    let mut chunk = [0u8; 24];
    loop {
        let n = stream.read(&mut chunk[..H2_PREFACE.len() - prefix.len()]).await?;
        if n == 0 {
            return Ok(None);
        }
        prefix.extend_from_slice(&chunk[..n]);
        if prefix[..] != H2_PREFACE[..prefix.len()] {
            return Ok(Some(false));
        }
        if prefix.len() == H2_PREFACE.len() {
            return Ok(Some(true));
        }
    }
}

/// The connection's requests: head limits, the body deadline, activity for the idle check.
fn service(
    app: Router,
    limits: Arc<Limits>,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible, Future: Send> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let in_flight = activity.enter();
        let refused = head_refusal(&req, &limits);
        let req = req.map(|b| axum::body::Body::new(DeadlineBody::new(b, limits.body, limits.body_timeouts)));
        let mut app = app.clone();
        async move {
            let _in_flight = in_flight;
            match refused {
                Some(resp) => Ok(resp),
                None => app.call(req).await,
            }
        }
    })
}

/// 431 in the error shape for a head over the configured limits (counted as hyper counts:
/// target, names and values; the separators too).
fn head_refusal<B>(req: &Request<B>, limits: &Limits) -> Option<Response> {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len()) + uri.authority().map_or(0, |a| a.as_str().len());
    let bytes = target + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    let fields = req.headers().len();
    if bytes <= limits.head_bytes && fields <= limits.headers {
        return None;
    }
    closed(limits.server, "headers_too_large");
    let message = format!(
        "the request head is {bytes} bytes in {fields} header fields; at most {} bytes and {} fields are read",
        limits.head_bytes, limits.headers
    );
    Some(error_response(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", message, Value::Null))
}

/// Requests in flight on one connection and when the last one ended (ms since it opened).
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity { opened: Instant::now(), in_flight: AtomicUsize::new(0), last_ms: AtomicU64::new(0) }
    }

    fn enter(self: &Arc<Self>) -> impl Drop + Send {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let me = self.clone();
        scopeguard(move || {
            me.last_ms.store(me.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
            me.in_flight.fetch_sub(1, Ordering::Relaxed);
        })
    }

    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.opened.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Run `f` when dropped.
fn scopeguard<F: FnOnce() + Send>(f: F) -> impl Drop + Send {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f()
            }
        }
    }
    Guard(Some(f))
}

/// The stream with the bytes `sniff` read put back in front.
struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
