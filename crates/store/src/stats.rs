//! Known events, per-day counts and the audit log: what the control plane shows about a
//! source, and who changed what.

use crate::{day_of, db, now_ms, unavailable, Store, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct KnownEvent {
    pub event_type: String,
    pub name: Option<String>,
    pub count: i64,
    pub last_seen: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: serde_json::Value,
}

impl Store {
    pub async fn known_events(&self, source: &str, environment: &str) -> Result<Vec<KnownEvent>, StoreError> {
        let counts = self
            .session
            .query_unpaged(
                format!("SELECT event_type, name, seen FROM {}.known_event_counts WHERE source = ? AND environment = ?", self.ks),
                (source, environment),
            )
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let seen = self
            .session
            .query_unpaged(
                format!("SELECT event_type, name, last_seen FROM {}.known_event_last_seen WHERE source = ? AND environment = ?", self.ks),
                (source, environment),
            )
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut last = std::collections::HashMap::new();
        for r in seen.rows::<(String, String, Option<i64>)>().map_err(unavailable)? {
            let (t, n, at) = r.map_err(unavailable)?;
            last.insert((t, n), at);
        }
        let mut out = Vec::new();
        for r in counts.rows::<(String, String, Option<scylla::value::Counter>)>().map_err(unavailable)? {
            let (t, n, c) = r.map_err(unavailable)?;
            let last_seen = last.get(&(t.clone(), n.clone())).copied().flatten();
            out.push(KnownEvent { event_type: t, name: (!n.is_empty()).then_some(n), count: c.map(|c| c.0).unwrap_or(0), last_seen });
        }
        Ok(out)
    }

    /// Events of a source environment over the last `days` days.
    pub async fn events_in_last_days(&self, source: &str, environment: &str, days: i32) -> Result<i64, StoreError> {
        let today = day_of(now_ms());
        let rows = self
            .session
            .query_unpaged(
                format!("SELECT events FROM {}.source_daily_counts WHERE source = ? AND environment = ? AND day > ?", self.ks),
                (source, environment, today - days),
            )
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut total = 0;
        for r in rows.rows::<(Option<scylla::value::Counter>,)>().map_err(unavailable)? {
            total += r.map_err(unavailable)?.0.map(|c| c.0).unwrap_or(0);
        }
        Ok(total)
    }

    pub async fn audit(&self, actor: &str, action: &str, target: &str, details: &serde_json::Value, ttl_secs: i32) -> Result<(), StoreError> {
        let at = now_ms();
        self.session
            .query_unpaged(
                format!("INSERT INTO {}.audit_log (day, at, id, actor, action, target, details) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?", self.ks),
                (day_of(at), at, uuid::Uuid::new_v4().to_string(), actor, action, target, details.to_string(), ttl_secs),
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Newest first, over the last `days` days.
    pub async fn audit_entries(&self, days: i32, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let mut out = Vec::new();
        let today = day_of(now_ms());
        for d in (today - days + 1..=today).rev() {
            let rows = self
                .session
                .query_unpaged(
                    format!("SELECT id, at, actor, action, target, details FROM {}.audit_log WHERE day = ? LIMIT ?", self.ks),
                    (d, (limit - out.len()) as i32),
                )
                .await
                .map_err(db)?
                .into_rows_result()
                .map_err(unavailable)?;
            for r in rows.rows::<(String, i64, Option<String>, Option<String>, Option<String>, Option<String>)>().map_err(unavailable)? {
                let (id, at, actor, action, target, details) = r.map_err(unavailable)?;
                out.push(AuditEntry {
                    id,
                    at,
                    actor: actor.unwrap_or_default(),
                    action: action.unwrap_or_default(),
                    target: target.unwrap_or_default(),
                    details: details.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
                });
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}
