//! An in-memory copy of the configuration, reloaded in the background.
//!
//! Readers take an `Arc<Snapshot>` (a pointer copy under a briefly held lock), so the hot path
//! never waits on the database, and a configuration change is live everywhere within one
//! refresh interval.

use crate::config::Snapshot;
use crate::Store;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Clone)]
pub struct ConfigCache {
    current: Arc<RwLock<Arc<Snapshot>>>,
    loaded: Arc<std::sync::atomic::AtomicBool>,
}

impl ConfigCache {
    /// Load once (so a role starts with its configuration), then keep reloading every
    /// `every` until `shutdown` flips.
    pub async fn start(store: Store, every: Duration, mut shutdown: watch::Receiver<bool>) -> Result<ConfigCache, crate::StoreError> {
        let first = store.snapshot().await?;
        let cache = ConfigCache {
            current: Arc::new(RwLock::new(Arc::new(first))),
            loaded: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        let c = cache.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|v| *v) => return,
                }
                match store.snapshot().await {
                    Ok(s) => {
                        *c.current.write().unwrap() = Arc::new(s);
                        c.loaded.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        c.loaded.store(false, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(error = %e, "configuration reload failed; keeping the last one");
                    }
                }
            }
        });
        Ok(cache)
    }

    /// A fixed snapshot (tests, `normalize`).
    pub fn fixed(s: Snapshot) -> ConfigCache {
        ConfigCache {
            current: Arc::new(RwLock::new(Arc::new(s))),
            loaded: Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    pub fn get(&self) -> Arc<Snapshot> {
        self.current.read().unwrap().clone()
    }

    /// Did the last reload succeed?
    pub fn fresh(&self) -> bool {
        self.loaded.load(std::sync::atomic::Ordering::Relaxed)
    }
}
