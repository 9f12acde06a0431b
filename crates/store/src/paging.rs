//! Listing logs newest first with cursor paging and filters.
//!
//! Timelines are partitioned by (environment, minute, bucket) and clustered newest first; a
//! page is a walk backwards through the minutes from the cursor, each minute's buckets merged in
//! order (timeline.rs). Filters that are not part of the key (source, type, user, status, ...)
//! are applied while walking: no secondary index, no `ALLOW FILTERING`, portable to ScyllaDB. A
//! cursor is `<timestamp>:<id>` of the last row returned; the next page starts strictly after
//! it.

use crate::timeline::Kind;
use crate::{Store, StoreError};
use serde::Serialize;

/// Where a page starts and how far back it may go.
#[derive(Debug, Clone)]
pub struct Window {
    /// Newest timestamp (ms) included.
    pub until: i64,
    /// Oldest timestamp (ms) included.
    pub since: i64,
    /// Continue after this (timestamp, id).
    pub after: Option<(i64, String)>,
    pub limit: usize,
}

impl Window {
    pub fn parse_cursor(c: &str) -> Option<(i64, String)> {
        let (t, id) = c.split_once(':')?;
        Some((t.parse().ok()?, id.to_string()))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    pub event_id: String,
    pub received_at: i64,
    pub source: Option<String>,
    pub event_type: Option<String>,
    pub name: Option<String>,
    pub user_id: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    pub action_id: String,
    pub event_id: Option<String>,
    pub inserted_at: i64,
    pub source: Option<String>,
    pub action_type: Option<String>,
    pub status: Option<String>,
    pub workflow: Option<String>,
}

/// A page and the cursor of the next one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

type EvTuple = (String, i64, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);
type AcTuple = (String, i64, Option<String>, Option<String>, Option<String>, Option<String>, Option<String>);

impl Store {
    pub async fn page_events(&self, environment: &str, w: &Window, keep: impl Fn(&EventRow) -> bool) -> Result<Page<EventRow>, StoreError> {
        let q = format!(
            "SELECT event_id, received_at, source, event_type, name, user_id, status FROM {}.event_timeline \
             WHERE environment = ? AND slice = ? AND bucket = ? AND received_at <= ? AND received_at >= ?",
            self.ks
        );
        self.page::<EvTuple, EventRow>(Kind::Events, &q, environment, w, |t| EventRow {
            event_id: t.0,
            received_at: t.1,
            source: t.2,
            event_type: t.3,
            name: t.4,
            user_id: t.5,
            status: t.6,
        }, |r| (r.received_at, r.event_id.clone()), keep)
        .await
    }

    pub async fn page_actions(&self, environment: &str, w: &Window, keep: impl Fn(&ActionRow) -> bool) -> Result<Page<ActionRow>, StoreError> {
        let q = format!(
            "SELECT action_id, inserted_at, event_id, source, action_type, status, workflow FROM {}.action_timeline \
             WHERE environment = ? AND slice = ? AND bucket = ? AND inserted_at <= ? AND inserted_at >= ?",
            self.ks
        );
        self.page::<AcTuple, ActionRow>(Kind::Actions, &q, environment, w, |t| ActionRow {
            action_id: t.0,
            inserted_at: t.1,
            event_id: t.2,
            source: t.3,
            action_type: t.4,
            status: t.5,
            workflow: t.6,
        }, |r| (r.inserted_at, r.action_id.clone()), keep)
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn page<T, R>(
        &self,
        kind: Kind,
        q: &str,
        environment: &str,
        w: &Window,
        make: impl Fn(T) -> R,
        key: impl Fn(&R) -> (i64, String),
        keep: impl Fn(&R) -> bool,
    ) -> Result<Page<R>, StoreError>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + 'static + HasTimeId,
    {
        let until = w.after.as_ref().map(|(t, _)| (*t).min(w.until)).unwrap_or(w.until);
        let mut items = Vec::new();
        let mut more = false;
        self.walk_timeline::<T>(kind, q, environment, w.since..=until, |t| t.time_id(), |t| {
            let row = make(t);
            let (t, id) = key(&row);
            if let Some((ct, cid)) = &w.after {
                // rows at the cursor's timestamp come in id order; skip up to the cursor
                if t == *ct && id <= *cid {
                    return true;
                }
            }
            if !keep(&row) {
                return true;
            }
            if items.len() == w.limit {
                more = true;
                return false;
            }
            items.push(row);
            true
        })
        .await?;
        let next_cursor = if more { items.last().map(|r| { let (t, id) = key(r); format!("{t}:{id}") }) } else { None };
        Ok(Page { items, next_cursor })
    }
}

/// (time, id) of a timeline row as selected above: id first, time second.
pub(crate) trait HasTimeId {
    fn time_id(&self) -> (i64, &str);
}

impl HasTimeId for EvTuple {
    fn time_id(&self) -> (i64, &str) {
        (self.1, &self.0)
    }
}
