//! An in-memory copy of the configuration, current the moment the admin API has answered.
//!
//! Readers take an `Arc<Snapshot>` (a pointer copy under a briefly held lock), so the hot path
//! does not wait on the database for configuration. Two things keep it current:
//!
//! - **The epoch.** Every configuration write also writes `config_epoch.changed_at` (one row).
//!   [`ConfigCache::as_of`] gives a snapshot that holds every change made before a moment (an
//!   event's receipt): when that moment is later than the last time the cache confirmed it was
//!   current, it reads the epoch row (one small read, shared by every caller waiting at that
//!   moment and spaced at least [`CHECK_SPACING`] apart, so a flood of unknown tokens costs the
//!   database at most ~40 reads a second per process), and reloads only if the configuration
//!   changed since its snapshot was loaded. A background poll does the same every `poll`
//!   interval, so removals (a secret, a token, a source) take effect that fast too.
//! - **The full reload**, every `every` interval, a safety net for an epoch write that failed.
//!
//! So a source created, a token rotated or a mapping added is used by the very next request or
//! event, with no waiting on a refresh interval, and nothing reads the database per event when
//! nothing changed.

use crate::config::Snapshot;
use crate::{now_ms, Store};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

/// Least time between two epoch reads of one process.
pub const CHECK_SPACING: Duration = Duration::from_millis(25);

#[derive(Clone)]
pub struct ConfigCache {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Arc<Snapshot>>,
    /// Did the last load succeed (readiness)?
    loaded: AtomicBool,
    /// No change made before this moment (ms, this host's clock) is missing from `current`.
    verified_to: AtomicI64,
    /// One epoch check at a time; holds when the last one started: as an instant (for the
    /// spacing) and in ms since the epoch (a caller that arrived before it needs no other).
    check: tokio::sync::Mutex<Option<(tokio::time::Instant, i64)>>,
    /// None for a fixed snapshot (tests, `normalize`).
    store: Option<Store>,
    /// Clocks of different hosts (the gateway's receipt time, this process's, the admin's
    /// write time) are assumed to agree within this much (`workers.clock_skew_ms`); the
    /// checks allow for it. A fixed snapshot has none.
    clock_skew_ms: i64,
}

impl ConfigCache {
    /// Load once (so a role starts with its configuration), then keep it current: an epoch
    /// check every `poll`, a full reload every `every`, until `shutdown` flips.
    pub async fn start(
        store: Store,
        every: Duration,
        poll: Duration,
        clock_skew_ms: i64,
        shutdown: watch::Receiver<bool>,
    ) -> Result<ConfigCache, crate::StoreError> {
        let first = store.snapshot().await?;
        let cache = ConfigCache::new(first, Some(store), clock_skew_ms);
        for (interval, full) in [(every, true), (poll, false)] {
            let (c, mut shutdown) = (cache.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(interval) => {}
                        _ = shutdown.wait_for(|v| *v) => return,
                    }
                    if full {
                        c.reload().await;
                    } else {
                        c.as_of(now_ms()).await;
                    }
                }
            });
        }
        Ok(cache)
    }

    /// A fixed snapshot (tests, `normalize`).
    pub fn fixed(s: Snapshot) -> ConfigCache {
        ConfigCache::new(s, None, 0)
    }

    fn new(s: Snapshot, store: Option<Store>, clock_skew_ms: i64) -> ConfigCache {
        let verified_to = if store.is_some() { s.loaded_at } else { i64::MAX };
        ConfigCache {
            inner: Arc::new(Inner {
                current: RwLock::new(Arc::new(s)),
                loaded: AtomicBool::new(true),
                verified_to: AtomicI64::new(verified_to),
                check: tokio::sync::Mutex::new(None),
                store,
                clock_skew_ms,
            }),
        }
    }

    /// The snapshot as it is, without asking anything.
    pub fn get(&self) -> Arc<Snapshot> {
        self.inner.current.read().unwrap().clone()
    }

    /// A snapshot holding every configuration change made before `at_ms` (ms since the epoch):
    /// the current one when it is known to, else after an epoch check (and a reload if the
    /// configuration changed). If the database does not answer, the current one.
    pub async fn as_of(&self, at_ms: i64) -> Arc<Snapshot> {
        if !self.behind(at_ms) {
            return self.get();
        }
        let arrived = now_ms();
        let mut last = self.inner.check.lock().await;
        // Whoever held the lock before may have checked past `at_ms` already; and a check that
        // started after this call arrived saw every change made before it. So callers queued
        // behind a check (a flood of unknown tokens) are all answered by the next one, not one
        // check each.
        if !self.behind(at_ms) || last.is_some_and(|(_, started)| started >= arrived) {
            return self.get();
        }
        if let Some((t, _)) = *last {
            tokio::time::sleep_until(t + CHECK_SPACING).await;
        }
        let started = now_ms();
        *last = Some((tokio::time::Instant::now(), started));
        let Some(store) = &self.inner.store else { return self.get() };
        match store.config_changed_at().await {
            Ok(changed_at) => {
                if changed_at > self.get().loaded_at - self.inner.clock_skew_ms {
                    self.reload().await;
                }
                self.inner.verified_to.fetch_max(started, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "configuration epoch check failed; using the snapshot held"),
        }
        self.get()
    }

    fn behind(&self, at_ms: i64) -> bool {
        at_ms.saturating_add(self.inner.clock_skew_ms) > self.inner.verified_to.load(Ordering::Relaxed)
    }

    /// Load the whole configuration again.
    async fn reload(&self) {
        let Some(store) = &self.inner.store else { return };
        match store.snapshot().await {
            Ok(s) => {
                let loaded_at = s.loaded_at;
                let mut current = self.inner.current.write().unwrap();
                // Two loads may overlap (the timer's and a check's): keep the newer.
                if loaded_at >= current.loaded_at {
                    *current = Arc::new(s);
                }
                drop(current);
                self.inner.verified_to.fetch_max(loaded_at, Ordering::Relaxed);
                self.inner.loaded.store(true, Ordering::Relaxed);
            }
            Err(e) => {
                self.inner.loaded.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "configuration reload failed; keeping the last one");
            }
        }
    }

    /// Did the last reload succeed?
    pub fn fresh(&self) -> bool {
        self.inner.loaded.load(Ordering::Relaxed)
    }
}
