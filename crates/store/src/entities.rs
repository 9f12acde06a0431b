//! Users and tenants (stored as one JSON object of properties each).

use crate::{db, now_ms, unavailable, Store, StoreError};
use scylla::statement::prepared::PreparedStatement;
use serde_json::{Map, Value};

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
}
