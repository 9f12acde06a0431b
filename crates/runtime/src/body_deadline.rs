//! A request body that must arrive whole by a deadline, and what a failed body read was.
//!
//! hyper has a timer for request heads but none for bodies: a client that sends a head and then
//! one byte a minute would hold its connection, its task and a half-read buffer for as long as it
//! likes. [`serve`](crate::serve) wraps every request body in a [`DeadlineBody`]; a handler that
//! reads it gets an error once the deadline passes, and [`body_failure`] tells that apart from a
//! body over the limit and from a client that went away, so each gets its own answer.

use axum::body::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body did not arrive whole within `http.body_timeout_ms` of the request head.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {} ms", self.0.as_millis())
    }
}

impl std::error::Error for BodyTimedOut {}

pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    limit: Duration,
    /// Made only when the body is not all there at once: most bodies arrive with their head,
    /// and the gateway's hot path then never touches the timer wheel.
    sleep: Option<Pin<Box<Sleep>>>,
    /// Counted here: the handler may answer 408 or, reading no body, nothing about it.
    timeouts: &'static prometheus::IntCounter,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, limit: Duration, timeouts: &'static prometheus::IntCounter) -> Self {
        DeadlineBody { inner, deadline: Instant::now() + limit, limit, sleep: None, timeouts }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.timeouts.inc();
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(this.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Why reading a request body failed.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyFailure {
    /// More than the limit given to `axum::body::to_bytes`: 413.
    TooLarge,
    /// Not whole by the deadline: 408.
    TimedOut,
    /// The client broke off or sent a malformed body (bad chunked framing): 400; the client
    /// rarely waits for it.
    Broken(String),
}

/// Classify an error of `axum::body::to_bytes`: the cause sits some layers down the chain
/// (axum's error, then http-body-util's, then ours or hyper's).
pub fn body_failure(err: &(dyn std::error::Error + 'static)) -> BodyFailure {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyTimedOut>() {
            return BodyFailure::TimedOut;
        }
        if e.is::<http_body_util::LengthLimitError>() {
            return BodyFailure::TooLarge;
        }
        cur = e.source();
    }
    BodyFailure::Broken(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as AxumBody;

    fn nothing() -> &'static prometheus::IntCounter {
        Box::leak(Box::new(prometheus::IntCounter::new("t", "t").unwrap()))
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out_and_says_so() {
        // A body that yields one chunk and then nothing, ever.
        let rx = Pending([Bytes::from_static(b"{\"a\":")].into());
        let body = AxumBody::new(DeadlineBody::new(rx, Duration::from_millis(50), nothing()));
        let started = std::time::Instant::now();
        let err = axum::body::to_bytes(body, 1024).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(body_failure(&err), BodyFailure::TimedOut, "{err}");
    }

    #[tokio::test]
    async fn over_the_limit_and_complete_bodies() {
        let body = AxumBody::new(DeadlineBody::new(AxumBody::from(vec![b'x'; 2000]), Duration::from_secs(5), nothing()));
        let err = axum::body::to_bytes(body, 1024).await.unwrap_err();
        assert_eq!(body_failure(&err), BodyFailure::TooLarge, "{err}");
        let body = AxumBody::new(DeadlineBody::new(AxumBody::from("{}"), Duration::from_millis(1), nothing()));
        assert_eq!(&axum::body::to_bytes(body, 1024).await.unwrap()[..], b"{}");
    }

    /// A minimal body that yields pushed chunks and then stays pending.
    struct Pending(std::collections::VecDeque<Bytes>);
    impl Body for Pending {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.0.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }
}
