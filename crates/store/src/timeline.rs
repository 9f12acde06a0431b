//! Timelines: event logs and action logs listed newest first, on partitions whose size does
//! not grow with the total number of events.
//!
//! An entry goes to the partition `(environment, slice, bucket)`: `slice` is its minute
//! ([`SLICE_MS`]), `bucket` a hash of its id over the store's bucket count. So a partition holds
//! at most one minute of one environment's entries divided by the bucket count: at `r` events/s
//! per environment and `b` buckets, `60·r/b` rows, whatever the volume over time (ScyllaDB warns
//! at 100,000 rows: with the default 8 buckets, under 13,000 events/s per environment).
//!
//! Which slices hold anything is kept in `timeline_slices`, one partition per environment, kind
//! and day (at most 1,440 rows), written once per slice by each writing process, not per entry.
//! A listing walks the day's slices newest first and merges each slice's buckets in clustering
//! order (time descending, id ascending), so paging with a cursor works as on one partition.
//! Each slice row also records the bucket count its entries were written with: changing
//! `cassandra.timeline_buckets` leaves earlier slices readable.

use crate::{day_of, db, unavailable, Store, StoreError};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// Width of a slice: one minute.
pub const SLICE_MS: i64 = 60_000;
/// Buckets per slice unless configured (`cassandra.timeline_buckets`).
pub const DEFAULT_BUCKETS: i32 = 8;

pub(crate) fn slice_of(ms: i64) -> i64 {
    ms.div_euclid(SLICE_MS)
}

/// FNV-1a: stable across processes, versions and platforms (the bucket must be recomputable).
pub(crate) fn bucket_of(id: &str, buckets: i32) -> i32 {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    (h % buckets.max(1) as u64) as i32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Events,
    Actions,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Events => "events",
            Kind::Actions => "actions",
        }
    }
}

/// The slices this process has recorded in `timeline_slices`, with the longest TTL written, so
/// the index row is written once per slice (again only if a longer-lived entry comes).
#[derive(Default)]
pub(crate) struct SliceIndex {
    seen: Mutex<HashMap<(String, Kind, i64), i32>>,
}

impl SliceIndex {
    /// Does this slice's index row need writing for an entry living `ttl` seconds?
    pub(crate) fn needs(&self, env: &str, kind: Kind, slice: i64, ttl: i32) -> bool {
        let seen = self.seen.lock().unwrap();
        seen.get(&(env.to_string(), kind, slice)).is_none_or(|t| *t < ttl)
    }

    /// Record a written index row; forget slices older than ten minutes.
    pub(crate) fn written(&self, env: &str, kind: Kind, slice: i64, ttl: i32) {
        let mut seen = self.seen.lock().unwrap();
        let t = seen.entry((env.to_string(), kind, slice)).or_insert(ttl);
        *t = (*t).max(ttl);
        if seen.len() > 256 {
            seen.retain(|(_, _, s), _| *s > slice - 10);
        }
    }
}

impl Store {
    /// Record that `slice` of `env` holds entries of `kind` living up to `ttl` seconds (once
    /// per slice and process).
    pub(crate) async fn index_slice(&self, env: &str, kind: Kind, at_ms: i64, ttl: i32) -> Result<(), StoreError> {
        let slice = slice_of(at_ms);
        if !self.slices.needs(env, kind, slice, ttl) {
            return Ok(());
        }
        // The row outlives the slice's last entry: entries come up to a slice later.
        let row_ttl = ttl.saturating_add((2 * SLICE_MS / 1000) as i32);
        self.session
            .execute_unpaged(&self.stmts.insert_slice, (env, kind.as_str(), day_of(at_ms), slice, self.buckets, row_ttl))
            .await
            .map_err(crate::db)?;
        self.slices.written(env, kind, slice, ttl);
        Ok(())
    }

    /// The slices of `env` holding entries of `kind` between `since` and `until` (ms), newest
    /// first, each with the largest bucket count it was written with.
    async fn slices(&self, env: &str, kind: Kind, since: i64, until: i64) -> Result<Vec<(i64, i32)>, StoreError> {
        let mut out = Vec::new();
        for day in (day_of(since)..=day_of(until)).rev() {
            let rows = self
                .session
                .execute_unpaged(&self.stmts.select_slices, (env, kind.as_str(), day, slice_of(until), slice_of(since)))
                .await
                .map_err(db)?
                .into_rows_result()
                .map_err(unavailable)?;
            let mut day_slices: BTreeMap<i64, i32> = BTreeMap::new();
            for r in rows.rows::<(i64, i32)>().map_err(unavailable)? {
                let (slice, buckets) = r.map_err(unavailable)?;
                let b = day_slices.entry(slice).or_insert(buckets);
                *b = (*b).max(buckets);
            }
            out.extend(day_slices.into_iter().rev());
        }
        Ok(out)
    }

    /// Every entry of `kind` in `env` within `window` (ms, inclusive), newest first,
    /// calling `each` until it returns false. `select` is the timeline query with the bind
    /// markers `environment = ? AND slice = ? AND bucket = ? AND <time> <= ? AND <time> >= ?`;
    /// `time_id` gives a row's (time, id).
    pub(crate) async fn walk_timeline<T>(
        &self,
        kind: Kind,
        select: &str,
        env: &str,
        window: std::ops::RangeInclusive<i64>,
        time_id: impl Fn(&T) -> (i64, &str),
        mut each: impl FnMut(T) -> bool,
    ) -> Result<(), StoreError>
    where
        T: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + 'static,
    {
        let (since, until) = (*window.start(), *window.end());
        for (slice, buckets) in self.slices(env, kind, since, until).await? {
            let opened = futures::future::join_all((0..buckets).map(|b| {
                let mut st = scylla::statement::Statement::new(select.to_string());
                st.set_page_size(200);
                self.session.query_iter(st, (env, slice, b, until, since))
            }))
            .await;
            let mut streams = Vec::with_capacity(opened.len());
            for pager in opened {
                streams.push(pager.map_err(unavailable)?.rows_stream::<T>().map_err(unavailable)?);
            }
            // k-way merge: each bucket is already in (time desc, id asc) order.
            let mut heads: Vec<Option<T>> = Vec::with_capacity(streams.len());
            for s in streams.iter_mut() {
                heads.push(s.next().await.transpose().map_err(unavailable)?);
            }
            loop {
                let best = heads
                    .iter()
                    .enumerate()
                    .filter_map(|(i, h)| h.as_ref().map(|r| (i, time_id(r))))
                    .max_by(|(_, (ta, ia)), (_, (tb, ib))| ta.cmp(tb).then_with(|| ib.cmp(ia)))
                    .map(|(i, _)| i);
                let Some(i) = best else { break };
                let row = heads[i].take().expect("a head");
                heads[i] = streams[i].next().await.transpose().map_err(unavailable)?;
                if !each(row) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Store {
    /// Rows of each event-timeline partition `(slice, bucket)` of `env` between `since` and
    /// `until` (tests: the partition bound).
    pub async fn timeline_partition_sizes(&self, env: &str, since: i64, until: i64) -> Result<HashMap<(i64, i32), usize>, StoreError> {
        let mut out = HashMap::new();
        for (slice, buckets) in self.slices(env, Kind::Events, since, until).await? {
            for b in 0..buckets {
                let q = format!("SELECT COUNT(*) FROM {}.event_timeline WHERE environment = ? AND slice = ? AND bucket = ?", self.ks);
                let rows = self.session.query_unpaged(q, (env, slice, b)).await.map_err(db)?.into_rows_result().map_err(unavailable)?;
                let (n,) = rows.first_row::<(i64,)>().map_err(unavailable)?;
                if n > 0 {
                    out.insert((slice, b), n as usize);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable_and_spread() {
        assert_eq!(bucket_of("evt_1", 8), bucket_of("evt_1", 8));
        let mut counts = [0; 8];
        for i in 0..8000 {
            counts[bucket_of(&format!("evt_{i}"), 8) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
        assert_eq!(bucket_of("anything", 1), 0);
    }

    #[test]
    fn slices_are_minutes() {
        assert_eq!(slice_of(59_999), 0);
        assert_eq!(slice_of(60_000), 1);
        assert_eq!(slice_of(-1), -1);
    }

    #[test]
    fn the_index_is_written_once_per_slice_unless_a_longer_ttl_comes() {
        let idx = SliceIndex::default();
        assert!(idx.needs("dev", Kind::Events, 5, 100));
        idx.written("dev", Kind::Events, 5, 100);
        assert!(!idx.needs("dev", Kind::Events, 5, 100));
        assert!(!idx.needs("dev", Kind::Events, 5, 50));
        assert!(idx.needs("dev", Kind::Events, 5, 200));
        assert!(idx.needs("dev", Kind::Actions, 5, 100));
        assert!(idx.needs("prod", Kind::Events, 5, 100));
    }
}
