//! Known-event and daily counts, added up in memory and written as one update per key per
//! interval, not one per event.
//!
//! A counter update per event put every event of a source environment on one partition
//! (`known_event_counts`, `source_daily_counts`): at volume, that partition is the bottleneck.
//! Here a process adds its events up and flushes each key once per interval (1 s in the
//! roles), so the database sees as many updates as there are distinct event names, whatever the
//! rate.
//!
//! What a crash can do: the counts a process held but had not flushed (at most one interval's)
//! are lost with it; a report redelivered after a crash counts again. Counters are for display
//! (known events, the 30-day status), never for decisions.

use crate::{day_of, Store, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// (source, environment, event type, name)
type KnownKey = (String, String, String, String);
/// (source, environment, day)
type DailyKey = (String, String, i32);

#[derive(Default)]
pub(crate) struct Pending {
    /// count and last seen (ms)
    known: HashMap<KnownKey, (i64, i64)>,
    daily: HashMap<DailyKey, i64>,
}

#[derive(Default)]
pub(crate) struct Counters {
    pending: Mutex<Pending>,
}

impl Counters {
    fn add(&self, source: &str, environment: &str, event_type: &str, name: &str, at: i64) {
        let mut p = self.pending.lock().unwrap();
        let k = p.known.entry((source.into(), environment.into(), event_type.into(), name.into())).or_insert((0, at));
        k.0 += 1;
        k.1 = k.1.max(at);
        *p.daily.entry((source.into(), environment.into(), day_of(at))).or_insert(0) += 1;
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().unwrap())
    }

    /// Put back what a failed flush did not write (it is retried at the next one).
    fn restore(&self, back: Pending) {
        let mut p = self.pending.lock().unwrap();
        for (k, (n, at)) in back.known {
            let e = p.known.entry(k).or_insert((0, at));
            e.0 += n;
            e.1 = e.1.max(at);
        }
        for (k, n) in back.daily {
            *p.daily.entry(k).or_insert(0) += n;
        }
    }
}

impl Store {
    /// Count an event of `event_type`/`name` for its source environment (in memory until the
    /// next [`Store::flush_counters`]).
    pub fn count_event(&self, source: &str, environment: &str, event_type: &str, name: Option<&str>, at: i64) {
        self.counters.add(source, environment, event_type, name.unwrap_or(""), at);
    }

    /// Write every pending count: one update per key. On a failure, what was not written is
    /// kept for the next flush. Returns the keys written.
    pub async fn flush_counters(&self) -> Result<usize, StoreError> {
        let pending = self.counters.take();
        let st = &self.stmts;
        let mut left = Pending::default();
        let mut written = 0;
        let mut first_error = None;
        for ((source, env, t, name), (n, at)) in pending.known {
            let (a, b) = futures::join!(
                self.session.execute_unpaged(&st.count_known, (scylla::value::Counter(n), &source, &env, &t, &name)),
                self.session.execute_unpaged(&st.seen_known, (&source, &env, &t, &name, at)),
            );
            match a.and(b) {
                Ok(_) => written += 1,
                Err(e) => {
                    first_error.get_or_insert(crate::db(e));
                    left.known.insert((source, env, t, name), (n, at));
                }
            }
        }
        for ((source, env, day), n) in pending.daily {
            match self.session.execute_unpaged(&st.count_daily, (scylla::value::Counter(n), &source, &env, day)).await {
                Ok(_) => written += 1,
                Err(e) => {
                    first_error.get_or_insert(crate::db(e));
                    left.daily.insert((source, env, day), n);
                }
            }
        }
        self.counters.restore(left);
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Flush the counts every `every` until `shutdown` flips. The last flush is the caller's,
    /// once the stages that count have stopped.
    pub fn spawn_counter_flush(&self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let store = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.wait_for(|v| *v) => return,
                }
                if let Err(e) = store.flush_counters().await {
                    tracing::warn!(error = %e, "counter flush failed; kept for the next one");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_add_up_per_key_and_a_failed_flush_keeps_them() {
        let c = Counters::default();
        for at in [5, 9, 7] {
            c.add("web", "development", "track", "Order Completed", at);
        }
        c.add("web", "development", "identify", "", 86_400_000 + 1);
        let p = c.take();
        assert_eq!(p.known[&("web".into(), "development".into(), "track".into(), "Order Completed".into())], (3, 9));
        assert_eq!(p.daily[&("web".into(), "development".into(), 0)], 3);
        assert_eq!(p.daily[&("web".into(), "development".into(), 1)], 1);
        assert!(c.take().known.is_empty(), "taken once");
        // a failed flush puts its counts back, adding to what came meanwhile
        c.add("web", "development", "track", "Order Completed", 11);
        c.restore(p);
        let again = c.take();
        assert_eq!(again.known[&("web".into(), "development".into(), "track".into(), "Order Completed".into())], (4, 11));
        assert_eq!(again.daily[&("web".into(), "development".into(), 0)], 4);
    }
}
