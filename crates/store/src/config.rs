//! The configuration store: environments, sources, their per-environment settings, mappings.
//! Workers and the gateway read it whole into memory ([`Snapshot`]) every few seconds, so no
//! hot path waits on the database for configuration.

use crate::{db, now_ms, unavailable, Store, StoreError};
use std::collections::HashMap;
use tributary_model::{EnvironmentSettings, Mapping, Source, Template};

/// Everything the pipeline needs to know about configuration, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When this snapshot's load began (ms, this host's clock): every change written before it
    /// is in it.
    pub loaded_at: i64,
    pub sources: HashMap<String, Source>,
    /// (source, environment) → settings
    pub settings: HashMap<(String, String), EnvironmentSettings>,
    /// (source, environment) → mappings, in creation order
    pub mappings: HashMap<(String, String), Vec<Mapping>>,
    /// ingest token → (source, environment), current and rotated-out tokens alike
    pub tokens: HashMap<String, (String, String)>,
}

impl Snapshot {
    /// The settings an ingest token opens, with its source's template: the current token, or a
    /// rotated-out one still inside its grace period (`now_ms`). None also when the source
    /// itself is not in this snapshot (loaded between two writes of its creation): the caller
    /// then asks for a newer snapshot rather than guess the template.
    pub fn by_token(&self, token: &str, now_ms: i64) -> Option<(&EnvironmentSettings, Template)> {
        let s = self.settings.get(self.tokens.get(token)?)?;
        let current = s.token == token;
        let in_grace =
            s.previous_token.as_deref() == Some(token) && s.previous_token_expires_at.is_some_and(|t| t > now_ms);
        let template = self.sources.get(&s.source)?.template;
        (current || in_grace).then_some((s, template))
    }

    /// Build the token index (after `settings` changed).
    pub fn index(&mut self) {
        self.tokens.clear();
        for (k, s) in &self.settings {
            self.tokens.insert(s.token.clone(), k.clone());
            if let Some(prev) = &s.previous_token {
                self.tokens.insert(prev.clone(), k.clone());
            }
        }
    }

    pub fn settings_for(&self, source: &str, environment: &str) -> Option<&EnvironmentSettings> {
        self.settings.get(&(source.to_string(), environment.to_string()))
    }

    pub fn mappings_for(&self, source: &str, environment: &str) -> &[Mapping] {
        self.mappings.get(&(source.to_string(), environment.to_string())).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl Store {
    pub async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let ks = &self.ks;
        let mut snap = Snapshot { loaded_at: now_ms(), ..Snapshot::default() };
        for s in self.list_sources().await? {
            snap.sources.insert(s.key.clone(), s);
        }
        let settings: Vec<EnvironmentSettings> =
            self.json_rows(format!("SELECT settings FROM {ks}.source_environments"), (), "settings").await?;
        for s in settings {
            snap.settings.insert((s.source.clone(), s.environment.clone()), s);
        }
        let mappings: Vec<Mapping> = self.json_rows(format!("SELECT body FROM {ks}.mappings"), (), "mapping").await?;
        for m in mappings {
            snap.mappings.entry((m.source.clone(), m.environment.clone())).or_default().push(m);
        }
        for list in snap.mappings.values_mut() {
            list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        }
        snap.index();
        Ok(snap)
    }

    // ---- the configuration epoch

    /// Record that the configuration changed, after the change itself is written: a role that
    /// reads a `changed_at` newer than its snapshot reloads (see [`crate::ConfigCache`]).
    async fn touch_config(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged(format!("INSERT INTO {}.config_epoch (id, changed_at) VALUES (0, ?)", self.ks), (now_ms(),))
            .await
            .map_err(db)?;
        Ok(())
    }

    /// When the configuration last changed (ms, the writer's clock); 0 if never recorded.
    pub async fn config_changed_at(&self) -> Result<i64, StoreError> {
        let rows = self
            .session
            .query_unpaged(format!("SELECT changed_at FROM {}.config_epoch WHERE id = 0", self.ks), &[])
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        Ok(rows.maybe_first_row::<(Option<i64>,)>().map_err(unavailable)?.and_then(|r| r.0).unwrap_or(0))
    }

    // ---- environments

    pub async fn list_environments(&self) -> Result<Vec<String>, StoreError> {
        let rows = self
            .session
            .query_unpaged(format!("SELECT name FROM {}.environments", self.ks), &[])
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut out: Vec<String> = rows.rows::<(String,)>().map_err(unavailable)?.filter_map(|r| r.ok().map(|t| t.0)).collect();
        out.sort();
        Ok(out)
    }

    pub async fn put_environment(&self, name: &str) -> Result<(), StoreError> {
        self.session
            .query_unpaged(format!("INSERT INTO {}.environments (name, created_at) VALUES (?, ?)", self.ks), (name, now_ms()))
            .await
            .map_err(db)?;
        self.touch_config().await
    }

    pub async fn delete_environment(&self, name: &str) -> Result<(), StoreError> {
        self.session
            .query_unpaged(format!("DELETE FROM {}.environments WHERE name = ?", self.ks), (name,))
            .await
            .map_err(db)?;
        self.touch_config().await
    }

    /// `development` and `production` exist from the start.
    pub async fn ensure_default_environments(&self) -> Result<(), StoreError> {
        let have = self.list_environments().await?;
        for env in ["development", "production"] {
            if !have.iter().any(|e| e == env) {
                self.put_environment(env).await?;
            }
        }
        Ok(())
    }

    // ---- sources

    pub async fn list_sources(&self) -> Result<Vec<Source>, StoreError> {
        let rows = self
            .session
            .query_unpaged(format!("SELECT key, name, template, created_at FROM {}.sources", self.ks), &[])
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut out = Vec::new();
        for r in rows.rows::<(String, Option<String>, String, Option<i64>)>().map_err(unavailable)? {
            let (key, name, template, created_at) = r.map_err(unavailable)?;
            let template: Template = template.parse().map_err(|e: String| corrupt("source", e))?;
            out.push(Source { name: name.unwrap_or_else(|| key.clone()), key, template, created_at: created_at.unwrap_or(0) });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub async fn get_source(&self, key: &str) -> Result<Option<Source>, StoreError> {
        Ok(self.list_sources().await?.into_iter().find(|s| s.key == key))
    }

    pub async fn put_source(&self, s: &Source) -> Result<(), StoreError> {
        self.session
            .query_unpaged(
                format!("INSERT INTO {}.sources (key, name, template, created_at) VALUES (?, ?, ?, ?)", self.ks),
                (&s.key, &s.name, s.template.as_str(), s.created_at),
            )
            .await
            .map_err(db)?;
        self.touch_config().await
    }

    /// Delete a source with its settings and mappings in every environment.
    pub async fn delete_source(&self, key: &str) -> Result<(), StoreError> {
        for env in self.list_environments().await? {
            self.session
                .query_unpaged(format!("DELETE FROM {}.mappings WHERE source = ? AND environment = ?", self.ks), (key, &env))
                .await
                .map_err(db)?;
        }
        self.session
            .query_unpaged(format!("DELETE FROM {}.source_environments WHERE source = ?", self.ks), (key,))
            .await
            .map_err(db)?;
        self.session
            .query_unpaged(format!("DELETE FROM {}.sources WHERE key = ?", self.ks), (key,))
            .await
            .map_err(db)?;
        self.touch_config().await
    }

    // ---- settings

    pub async fn put_settings(&self, s: &EnvironmentSettings) -> Result<(), StoreError> {
        let json = serde_json::to_string(s).map_err(|e| corrupt("settings", e))?;
        self.session
            .query_unpaged(
                format!("INSERT INTO {}.source_environments (source, environment, settings, updated_at) VALUES (?, ?, ?, ?)", self.ks),
                (&s.source, &s.environment, json, now_ms()),
            )
            .await
            .map_err(db)?;
        self.touch_config().await
    }

    pub async fn list_settings(&self, source: &str) -> Result<Vec<EnvironmentSettings>, StoreError> {
        self.json_rows(format!("SELECT settings FROM {}.source_environments WHERE source = ?", self.ks), (source,), "settings").await
    }

    pub async fn get_settings(&self, source: &str, environment: &str) -> Result<Option<EnvironmentSettings>, StoreError> {
        Ok(self.list_settings(source).await?.into_iter().find(|s| s.environment == environment))
    }

    // ---- mappings

    pub async fn put_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        let json = serde_json::to_string(m).map_err(|e| corrupt("mapping", e))?;
        self.session
            .query_unpaged(
                format!("INSERT INTO {}.mappings (source, environment, id, body) VALUES (?, ?, ?, ?)", self.ks),
                (&m.source, &m.environment, &m.id, json),
            )
            .await
            .map_err(db)?;
        self.touch_config().await
    }

    pub async fn list_mappings(&self, source: &str, environment: &str) -> Result<Vec<Mapping>, StoreError> {
        let mut out: Vec<Mapping> = self
            .json_rows(format!("SELECT body FROM {}.mappings WHERE source = ? AND environment = ?", self.ks), (source, environment), "mapping")
            .await?;
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Rows of one JSON text column, each read as a `T`.
    async fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        query: String,
        values: impl scylla::serialize::row::SerializeRow,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let rows = self.session.query_unpaged(query, values).await.map_err(db)?.into_rows_result().map_err(unavailable)?;
        let mut out = Vec::new();
        for r in rows.rows::<(String,)>().map_err(unavailable)? {
            let (json,) = r.map_err(unavailable)?;
            out.push(serde_json::from_str(&json).map_err(|e| corrupt(what, e))?);
        }
        Ok(out)
    }

    pub async fn delete_mapping(&self, source: &str, environment: &str, id: &str) -> Result<(), StoreError> {
        self.session
            .query_unpaged(
                format!("DELETE FROM {}.mappings WHERE source = ? AND environment = ? AND id = ?", self.ks),
                (source, environment, id),
            )
            .await
            .map_err(db)?;
        self.touch_config().await
    }
}
