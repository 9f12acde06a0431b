//! Dedup claims: who holds an idempotency key, one partition per key.
//!
//! A claim is a read (who holds the key?) and, for a key nobody holds, a write. Sent one per
//! request, the database spends about as much on each request (decoding, dispatch, the answer)
//! as on the partition it touches: measured on the bench machine with Cassandra 5
//! (`cargo run --release -p tributary-store --example claim_probe`), a read of an absent key
//! cost 8–30 µs of Cassandra's CPU alone and 4.5–14 µs as one of 10–64 in an `IN`; a write
//! 16–56 µs alone and 10–33 µs as one of 10–32 in an unlogged batch (the spread is how warm its
//! JIT was). Claims were two of an event's three or so requests, and Cassandra is what runs
//! out first, so the translator reads and writes a batch's claims in groups.
//!
//! A group holds only keys whose partitions live on the same replica (and shard, on
//! ScyllaDB): the driver's token map says which. The database then answers a group from one
//! place, as a lone request would be; only the request overhead is shared. That is the rule
//! for batching across partitions that the scylla driver's shard-aware batching follows
//! (scylla-rust-driver #738); batches over partitions on different replicas only move the
//! fan-out to the coordinator, which is what Cassandra's and ScyllaDB's docs warn about.
//! Reads cannot be routed by token when they name several partitions, so a read group may
//! reach another node first and take one hop more; writes go to the first key's replica.

use crate::{db, unavailable, Store, StoreError};
use scylla::cluster::ClusterState;
use scylla::statement::batch::{Batch, BatchType};
use std::collections::HashMap;

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

/// An idempotency key as claims are stored: environment, source, key.
pub type ClaimKey = (String, String, String);

/// A claim to write: key, the event that claims it, how long it holds (seconds).
pub type NewClaim = (ClaimKey, String, i32);

/// Keys one read asks for at most. An `IN` on the partition key makes the coordinator read
/// each partition; past a few dozen the request's gain is spent and a slow partition holds
/// the rest (the probe: 10 → 14 µs, 32 and 64 → 12 µs per key).
pub const READ_GROUP: usize = 32;

/// Claims one unlogged batch carries at most. Cassandra logs a warning for an unlogged batch
/// over more than 10 partitions (`unlogged_batch_across_partitions_warn_threshold`), so 10.
pub const WRITE_GROUP: usize = 10;

/// Where a partition lives: its first replica's host id and shard (`None`: the driver has no
/// token map for the table yet; such keys group together).
type Place = Option<(uuid::Uuid, u32)>;

impl Store {
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
    /// [`Self::claim_key`]).
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

    /// Split keys into the groups one read asks for: same environment and source (the `IN`
    /// is on the key alone), same replica, at most [`READ_GROUP`].
    pub fn claim_read_groups(&self, keys: Vec<ClaimKey>) -> Vec<Vec<ClaimKey>> {
        let state = self.session.0.get_cluster_state();
        let mut by: HashMap<(String, String, Place), Vec<ClaimKey>> = HashMap::new();
        for k in keys {
            let place = self.place_of(&state, &k);
            by.entry((k.0.clone(), k.1.clone(), place)).or_default().push(k);
        }
        chunked(by.into_values(), READ_GROUP)
    }

    /// Who holds each of a read group's keys (one request): a key nobody holds is `None`.
    /// The keys must share environment and source (see [`Self::claim_read_groups`]).
    pub async fn claim_owners(&self, keys: &[ClaimKey]) -> Result<HashMap<ClaimKey, Option<String>>, StoreError> {
        let Some(first) = keys.first() else { return Ok(HashMap::new()) };
        let (environment, source) = (&first.0, &first.1);
        if keys.iter().any(|k| &k.0 != environment || &k.1 != source) {
            return Err(StoreError::Rejected("one claim read names one environment and source".into()));
        }
        if keys.len() == 1 {
            let owner = self.claim_owner(environment, source, &first.2).await?;
            return Ok(HashMap::from([(first.clone(), owner)]));
        }
        let names: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
        let rows = self
            .session
            .execute_reading(&self.stmts.select_dedup_many, (environment, source, &names), keys.len())
            .await
            .map_err(db)?
            .into_rows_result()
            .map_err(unavailable)?;
        let mut owners: HashMap<ClaimKey, Option<String>> = keys.iter().map(|k| (k.clone(), None)).collect();
        for row in rows.rows::<(String, Option<String>)>().map_err(unavailable)? {
            let (key, owner) = row.map_err(unavailable)?;
            owners.insert((environment.clone(), source.clone(), key), Some(owner.unwrap_or_default()));
        }
        Ok(owners)
    }

    /// Write claims in unlogged batches of keys on one replica; what failed, with why. A batch
    /// the database refuses (not a timeout: something in it it will never take) is written
    /// again one claim at a time, so one bad key does not take its neighbours' claims along.
    pub async fn write_claims(&self, claims: Vec<NewClaim>, concurrency: usize) -> Vec<(NewClaim, StoreError)> {
        use futures::StreamExt;
        let state = self.session.0.get_cluster_state();
        let mut by: HashMap<Place, Vec<NewClaim>> = HashMap::new();
        for c in claims {
            by.entry(self.place_of(&state, &c.0)).or_default().push(c);
        }
        let groups = chunked(by.into_values(), WRITE_GROUP);
        futures::stream::iter(groups)
            .map(|group| async move {
                match self.write_claim_group(&group).await {
                    Ok(()) => Vec::new(),
                    Err(e) if e.is_transient() || group.len() == 1 => group.into_iter().map(|c| (c, e.clone())).collect(),
                    Err(_) => {
                        let mut failed = Vec::new();
                        for c in group {
                            let ((env, src, key), id, window) = &c;
                            if let Err(e) = self.write_claim(env, src, key, id, *window).await {
                                failed.push((c, e));
                            }
                        }
                        failed
                    }
                }
            })
            .buffer_unordered(concurrency.max(1))
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    async fn write_claim_group(&self, group: &[NewClaim]) -> Result<(), StoreError> {
        if let [((env, src, key), id, window)] = group {
            return self.write_claim(env, src, key, id, *window).await;
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values = Vec::with_capacity(group.len());
        for ((env, src, key), id, window) in group {
            batch.append_statement(self.stmts.insert_dedup.clone());
            values.push((env.as_str(), src.as_str(), key.as_str(), id.as_str(), (*window).max(1)));
        }
        self.session.batch(&batch, values).await.map_err(db)?;
        Ok(())
    }

    /// The replica (and shard) a key's partition lives on, from the driver's token map.
    fn place_of(&self, state: &ClusterState, k: &ClaimKey) -> Place {
        let token = self.stmts.select_dedup.calculate_token(&(&k.0, &k.1, &k.2)).ok().flatten()?;
        state.get_token_endpoints(&self.ks, "dedup_keys", token).first().map(|(node, shard)| (node.host_id, *shard))
    }
}

/// Each group cut into pieces of at most `n`.
fn chunked<T>(groups: impl Iterator<Item = Vec<T>>, n: usize) -> Vec<Vec<T>> {
    let mut out = Vec::new();
    for mut g in groups {
        while g.len() > n {
            let rest = g.split_off(n);
            out.push(std::mem::replace(&mut g, rest));
        }
        if !g.is_empty() {
            out.push(g);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chunked;

    #[test]
    fn chunks_keep_every_item_once_and_stay_within_the_bound() {
        for sizes in [vec![0usize], vec![1], vec![10], vec![11], vec![25, 3, 0, 40]] {
            let groups: Vec<Vec<usize>> = sizes.iter().enumerate().map(|(g, n)| (0..*n).map(|i| g * 1000 + i).collect()).collect();
            let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
            let out = chunked(groups.into_iter(), 10);
            assert!(out.iter().all(|c| !c.is_empty() && c.len() <= 10), "{out:?}");
            // No piece mixes two groups.
            assert!(out.iter().all(|c| c.iter().all(|x| x / 1000 == c[0] / 1000)), "{out:?}");
            let mut got: Vec<usize> = out.into_iter().flatten().collect();
            all.sort_unstable();
            got.sort_unstable();
            assert_eq!(got, all);
        }
    }
}
