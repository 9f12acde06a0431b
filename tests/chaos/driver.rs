//! The drill's sender: what a CDP does. One request at a time per thread (so each user's
//! events are received in the order they were made), mixed shapes, every request retried with
//! the same body until it gets a definite answer, as Segment's and RudderStack's senders retry
//! a 503 or a dropped connection. It records every item it made and whether its request was
//! answered for good.

use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `Order Completed`: one trigger (mapped to a workflow).
    Track,
    /// `Late Event`: mapped only once the admin phase created its mapping; one trigger.
    Late,
    /// One `identify_user` action.
    Identify,
    /// The same message id again: logged `duplicate`, no action.
    Duplicate,
    /// No event name: logged `rejected` with `missing_event`, no action.
    Invalid,
}

#[derive(Clone, Debug)]
pub struct Item {
    pub mid: String,
    pub kind: Kind,
    pub body: Value,
    /// The request got a definite answer (2xx; for a refused single event its 400, given once
    /// the event was stored).
    pub acked: bool,
    /// When the answer came.
    pub acked_at: Option<Instant>,
}

pub struct Driver {
    pub port: u16,
    pub token: String,
    pub tag: String,
    pub users: Vec<String>,
    pub stop: Arc<AtomicBool>,
    /// Set once the `Late Event` mapping exists.
    pub late: Arc<AtomicBool>,
}

pub struct Sent {
    pub items: Vec<Item>,
    /// Answers that were 503, 429 or no answer at all (each retried).
    pub retried: u32,
}

impl Driver {
    pub fn run(self) -> Sent {
        let path = format!("/integrations/receive/{}", self.token);
        let mut items: Vec<Item> = Vec::new();
        let mut seqs = vec![0u64; self.users.len()];
        let mut retried = 0u32;
        let mut n = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            let u = n % self.users.len();
            let mut next = |kind: Kind, u: usize, n: usize| -> Item {
                let (user, mid) = (self.users[u].clone(), format!("{}-{n}", self.tag));
                // Order among this user's acted-on items, as made (= as received).
                let seq = if matches!(kind, Kind::Track | Kind::Late) {
                    seqs[u] += 1;
                    seqs[u]
                } else {
                    0
                };
                let props = json!({"mid": mid, "seq": seq, "phase": self.tag});
                let body = match kind {
                    Kind::Track => json!({"type": "track", "event": "Order Completed", "userId": user, "messageId": mid, "properties": props}),
                    Kind::Late => json!({"type": "track", "event": "Late Event", "userId": user, "messageId": mid, "properties": props}),
                    Kind::Identify => json!({"type": "identify", "userId": user, "messageId": mid, "traits": {"mid": mid}}),
                    Kind::Invalid => json!({"type": "track", "userId": user, "messageId": mid, "properties": props}),
                    Kind::Duplicate => unreachable!("a duplicate repeats an earlier item"),
                };
                Item { mid, kind, body, acked: false, acked_at: None }
            };
            let made: Vec<Item> = match n % 10 {
                5 => (0..4)
                    .map(|k| next(if k == 3 { Kind::Invalid } else { Kind::Track }, (u + k) % self.users.len(), n * 10 + k))
                    .collect(),
                6 => vec![next(Kind::Identify, u, n * 10)],
                7 => match items.iter().rev().find(|i| i.kind == Kind::Track && i.acked) {
                    Some(earlier) => vec![Item { kind: Kind::Duplicate, acked: false, ..earlier.clone() }],
                    None => vec![next(Kind::Track, u, n * 10)],
                },
                8 => vec![next(Kind::Invalid, u, n * 10)],
                k if k % 2 == 0 && self.late.load(Ordering::Relaxed) => vec![next(Kind::Late, u, n * 10)],
                _ => vec![next(Kind::Track, u, n * 10)],
            };
            n += 1;
            let body = if made.len() == 1 {
                made[0].body.to_string()
            } else {
                json!({"batch": made.iter().map(|i| i.body.clone()).collect::<Vec<_>>()}).to_string()
            };
            let acked = send_until_answered(self.port, &path, body.as_bytes(), &mut retried);
            let acked_at = acked.then(Instant::now);
            items.extend(made.into_iter().map(|i| Item { acked, acked_at, ..i }));
        }
        Sent { items, retried }
    }
}

/// Resend until a definite answer, for at most two minutes (then the items count as never
/// acknowledged, which the oracle does not hold against the pipeline).
fn send_until_answered(port: u16, path: &str, body: &[u8], retried: &mut u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        match tributary_tests::http::try_request(port, "POST", path, &[], Some(body)) {
            Ok((200 | 202, _, _)) => return true,
            Ok((400, v, _)) if v["error"]["code"] == "missing_event" => return true,
            Ok((503 | 429, _, _)) | Err(_) => {
                *retried += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Ok((s, v, _)) => panic!("unexpected answer {s}: {v}"),
        }
    }
    false
}
