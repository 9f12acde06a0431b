//! Users and tenants (stored as one JSON object of properties each), and dedup keys.

use crate::{db, now_ms, unavailable, Store, StoreError};
use scylla::statement::prepared::PreparedStatement;
use serde_json::{Map, Value};

/// What a dedup claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// First time this key is seen within the window: it now belongs to this event.
    New,
    /// The key already belongs to this very event (a redelivery after a crash): go on.
    Same,
    /// The key belongs to another event: this one is a duplicate of it.
    DuplicateOf(String),
}

impl Store {
    pub async fn get_user(&self, environment: &str, user_id: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        self.get_props(&self.stmts.select_user, environment, user_id).await
    }

    pub async fn put_user(&self, environment: &str, user_id: &str, props: &Map<String, Value>) -> Result<(), StoreError> {
        self.put_props(&self.stmts.upsert_user, environment, user_id, props).await
    }

    pub async fn get_tenant(&self, environment: &str, tenant_id: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        self.get_props(&self.stmts.select_tenant, environment, tenant_id).await
    }

    pub async fn put_tenant(&self, environment: &str, tenant_id: &str, props: &Map<String, Value>) -> Result<(), StoreError> {
        self.put_props(&self.stmts.upsert_tenant, environment, tenant_id, props).await
    }

    async fn get_props(&self, st: &PreparedStatement, env: &str, id: &str) -> Result<Option<Map<String, Value>>, StoreError> {
        let rows = self.session.execute_unpaged(st, (env, id)).await.map_err(db)?.into_rows_result().map_err(unavailable)?;
        match rows.maybe_first_row::<(Option<String>,)>().map_err(unavailable)? {
            None => Ok(None),
            Some((json,)) => {
                let v: Value = serde_json::from_str(json.as_deref().unwrap_or("{}"))
                    .map_err(|e| StoreError::Corrupt(format!("properties of {id}: {e}")))?;
                Ok(Some(v.as_object().cloned().unwrap_or_default()))
            }
        }
    }

    async fn put_props(&self, st: &PreparedStatement, env: &str, id: &str, props: &Map<String, Value>) -> Result<(), StoreError> {
        let json = Value::Object(props.clone()).to_string();
        self.session.execute_unpaged(st, (env, id, json, now_ms())).await.map_err(db)?;
        Ok(())
    }

    /// Claim an idempotency key for `event_id` for `window_secs`.
    ///
    /// Read, then write: not a lightweight transaction, because every event of one user in one
    /// environment is handled by one translator, in order (the raw topic is keyed that way), so
    /// the retries a sender makes arrive serially. The claim records the owning event id, so a
    /// redelivery of the same event after a crash is recognised as `Same`, not as a duplicate.
    pub async fn claim_key(&self, environment: &str, source: &str, key: &str, event_id: &str, window_secs: i32) -> Result<Claim, StoreError> {
        if let Some(owner) = self.claim_owner(environment, source, key).await? {
            return Ok(if owner == event_id { Claim::Same } else { Claim::DuplicateOf(owner) });
        }
        self.write_claim(environment, source, key, event_id, window_secs).await?;
        Ok(Claim::New)
    }

    /// The event that holds a claim on an idempotency key, if one does (the read half of
    /// [`Self::claim_key`]; the translator makes these for a whole batch at once).
    pub async fn claim_owner(&self, environment: &str, source: &str, key: &str) -> Result<Option<String>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.stmts.select_dedup, (environment, source, key))
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        Ok(rows.maybe_first_row::<(Option<String>,)>().map_err(unavailable)?.map(|(owner,)| owner.unwrap_or_default()))
    }

    /// Record `event_id`'s claim on an idempotency key for `window_secs` (the write half).
    pub async fn write_claim(&self, environment: &str, source: &str, key: &str, event_id: &str, window_secs: i32) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.stmts.insert_dedup, (environment, source, key, event_id, window_secs.max(1)))
            .await
            .map_err(db)?;
        Ok(())
    }
}
