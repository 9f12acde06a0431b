//! Audience membership: which users (within which tenant) are in an environment's audience.
//! Schema and bounds: `schema.rs` (`audience_members`). Adds and removes are idempotent, as
//! reverse-ETL tools resend rows: adding a member again keeps one row (with the latest
//! `added_at`), removing an absent one is a no-op.

use crate::{db, now_ms, unavailable, Store, StoreError};

/// The tenant column of a member without a tenant (clustering columns cannot be null).
const NO_TENANT: &str = "";

impl Store {
    pub async fn add_audience_member(&self, environment: &str, audience: &str, user_id: &str, tenant: Option<&str>) -> Result<(), StoreError> {
        let t = tenant.unwrap_or(NO_TENANT);
        self.session.execute_unpaged(&self.stmts.insert_member, (environment, audience, user_id, t, now_ms())).await.map_err(db)?;
        Ok(())
    }

    pub async fn remove_audience_member(&self, environment: &str, audience: &str, user_id: &str, tenant: Option<&str>) -> Result<(), StoreError> {
        let t = tenant.unwrap_or(NO_TENANT);
        self.session.execute_unpaged(&self.stmts.delete_member, (environment, audience, user_id, t)).await.map_err(db)?;
        Ok(())
    }

    /// The tenants (`None`: without a tenant) `user_id` is a member of `audience` in, with
    /// when each was added (ms).
    pub async fn audience_memberships(&self, environment: &str, audience: &str, user_id: &str) -> Result<Vec<(Option<String>, i64)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.stmts.select_member, (environment, audience, user_id))
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for row in rows.rows::<(String, Option<i64>)>().map_err(unavailable)? {
            let (tenant, added_at) = row.map_err(unavailable)?;
            out.push(((tenant != NO_TENANT).then_some(tenant), added_at.unwrap_or(0)));
        }
        Ok(out)
    }
}
