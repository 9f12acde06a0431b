//! Raw items → normalized events.
//!
//! Deduplication claims an idempotency key per event in the store: read who holds it, and if
//! nobody does, write the claim. One record at a time that is two round trips, in each lane
//! in turn. In exactly-once mode the stage hands the translator its whole batch first
//! ([`Handler::prepare`]): it translates the batch with one configuration snapshot, reads
//! every key's holder at once (many keys to a request, grouped by replica: see
//! `tributary_store::claims`), decides which of its events claim a key (the first of the
//! batch, in partition order, for a key nobody holds), and starts writing those claims at once,
//! grouped likewise, while the records are handled. [`Handler::before_commit`] waits for the
//! writes, so they are durable before the batch's outputs become visible. A batch whose claims
//! cannot be written is aborted and redone; a redone event finds its own claim
//! (`Claim::Same`). Without a prepared batch (at-least-once mode, a record's retry) a record
//! claims its key alone, as before.

use crate::metrics;
use futures::future::BoxFuture;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tributary_bus::{Handler, Producer, Record, StageError};
use tributary_model::ids::event_id;
use tributary_model::{EventRecord, EventStatus, ItemError, RawEvent};
use tributary_sources::{normalize_item, NormalizeInput};
use tributary_store::{Claim, ClaimKey, ConfigCache, NewClaim, Snapshot, Store, StoreError};

pub struct Translator {
    pub cache: ConfigCache,
    pub store: Store,
    pub producer: Producer,
    pub out_topic: String,
    /// The exactly-once batch in progress (empty otherwise).
    batch: Mutex<BatchState>,
}

impl Translator {
    pub fn new(cache: ConfigCache, store: Store, producer: Producer, out_topic: String) -> Self {
        Translator { cache, store, producer, out_topic, batch: Mutex::default() }
    }
}

/// What a raw item becomes before deduplication: its record, and the claim it must make.
struct Translated {
    record: EventRecord,
    claim: Option<(ClaimKey, i32)>,
}

/// The batch the stage is working through, from [`Handler::prepare`] to
/// [`Handler::before_commit`].
#[derive(Default)]
struct BatchState {
    /// Records translated ahead, by (partition, offset); each taken by its record's handler.
    prepared: HashMap<(i32, i64), Translated>,
    /// Who held each key when the batch was prepared (`None`: nobody). A key missing here
    /// (its read failed) is claimed by its record alone.
    holders: HashMap<ClaimKey, Option<String>>,
    /// Claims made while handling and not written yet: key → (event id, window). (The claims
    /// `prepare` decides are in `holders` as held, and written by `writes`.)
    claimed: HashMap<ClaimKey, (String, i32)>,
    /// The writes of the claims decided in `prepare`, started there (their failures).
    writes: Option<tokio::task::JoinHandle<Vec<(NewClaim, StoreError)>>>,
}

/// Claim requests (each a group of keys) in flight at once, per batch.
const CLAIM_CONCURRENCY: usize = 64;

impl Translator {
    /// The pure part plus dedup: what this raw item becomes (one record at a time).
    pub async fn translate(&self, raw: RawEvent) -> Result<EventRecord, StageError> {
        // A source created a moment before this event was received must be known here.
        let snapshot = metrics::config_as_of(&self.cache, "translator", raw.received_at).await;
        let mut t = translate_with(&snapshot, &raw);
        self.claim(&mut t).await?;
        Ok(t.record)
    }

    /// Settle the record's claim, if it has one: from the prepared batch when the key was read
    /// there, else in the store.
    async fn claim(&self, t: &mut Translated) -> Result<(), StageError> {
        let Some((key, window)) = &t.claim else { return Ok(()) };
        let id = t.record.event_id.clone();
        let decided = {
            let mut b = self.batch.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((owner, _)) = b.claimed.get(key) {
                Some(claim_of(owner, &id))
            } else {
                match b.holders.get(key) {
                    Some(Some(owner)) => Some(claim_of(owner, &id)),
                    Some(None) => {
                        b.claimed.insert(key.clone(), (id.clone(), *window));
                        Some(Claim::New)
                    }
                    None => None,
                }
            }
        };
        let claim = match decided {
            Some(c) => c,
            None => self.store.claim_key(&key.0, &key.1, &key.2, &id, *window).await.map_err(crate::store_error)?,
        };
        if let Claim::DuplicateOf(first) = claim {
            t.record.status = EventStatus::Duplicate;
            t.record.duplicate_of = Some(first);
        }
        Ok(())
    }
}

/// A batch translated ahead of its records' handling: records by (partition, offset), the
/// claims they want in partition order (key, event id, window), and who holds each key.
type Ahead = (HashMap<(i32, i64), Translated>, Vec<NewClaim>, HashMap<ClaimKey, Option<String>>);

impl Translator {
    /// Translate a batch with `snapshot` and read who holds each of its keys, many at once.
    async fn translate_batch(&self, snapshot: &Snapshot, raws: &[(i32, i64, RawEvent)]) -> Ahead {
        let mut prepared = HashMap::with_capacity(raws.len());
        // In partition order (the batch's order): who claims a key nobody holds is the first
        // of the batch to come with it, as if each were handled in turn.
        let mut wanted: Vec<NewClaim> = Vec::new();
        for (partition, offset, raw) in raws {
            let t = translate_with(snapshot, raw);
            if let Some((k, window)) = &t.claim {
                wanted.push((k.clone(), t.record.event_id.clone(), *window));
            }
            prepared.insert((*partition, *offset), t);
        }
        let mut keys: Vec<ClaimKey> = wanted.iter().map(|(k, _, _)| k.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        // Grouped by replica, many keys to a request (see tributary_store::claims).
        let holders = futures::stream::iter(self.store.claim_read_groups(keys))
            .map(|group| async move {
                let owners = self.store.claim_owners(&group).await;
                (group.len(), owners)
            })
            .buffer_unordered(CLAIM_CONCURRENCY)
            .filter_map(|(n, owners)| async move {
                match owners {
                    Ok(o) => Some(futures::stream::iter(o)),
                    Err(e) => {
                        // Their records claim each key alone, and report the error there.
                        tracing::debug!(error = %e, keys = n, "reading dedup keys for the batch failed");
                        None
                    }
                }
            })
            .flatten()
            .collect()
            .await;
        (prepared, wanted, holders)
    }
}

/// The claims a batch makes, given the claims its events want (in partition order) and who
/// held each key when the batch was read: a key nobody holds goes to the first event of the
/// batch that wants it, and is recorded in `holders` as that event's, so the others with it
/// find it held when handled. A key whose holder could not be read (missing from `holders`)
/// is left to its records, which claim it alone.
fn decide_claims(wanted: Vec<NewClaim>, holders: &mut HashMap<ClaimKey, Option<String>>) -> Vec<NewClaim> {
    let mut claims = Vec::new();
    for (k, id, window) in wanted {
        if let Some(holder @ None) = holders.get_mut(&k) {
            *holder = Some(id.clone());
            claims.push((k, id, window));
        }
    }
    claims
}

fn claim_of(owner: &str, id: &str) -> Claim {
    if owner == id {
        Claim::Same
    } else {
        Claim::DuplicateOf(owner.to_string())
    }
}


/// Translate a raw item with a configuration snapshot (pure).
fn translate_with(snapshot: &Snapshot, raw: &RawEvent) -> Translated {
    let id = event_id(&raw.request_id, raw.index);
    let mut record = EventRecord {
        event_id: id,
        request_id: raw.request_id.clone(),
        index: raw.index,
        source: raw.source.clone(),
        environment: raw.environment.clone(),
        template: raw.template,
        received_at: raw.received_at,
        verification: raw.verification.clone(),
        status: EventStatus::Processed,
        error: None,
        raw: None,
        normalized: None,
        duplicate_of: None,
    };
    // Refused as a whole (a Kafka ingest record that is not JSON or too large; a request
    // the gateway answered 2xx because its sender would only retry a 4xx): logged as
    // rejected with the reason given where it was refused.
    if let Some(error) = &raw.refused {
        record.status = EventStatus::Rejected;
        record.error = Some(error.clone());
        record.raw = Some(raw.item.clone());
        return Translated { record, claim: None };
    }
    let Some(settings) = snapshot.settings_for(&raw.source, &raw.environment) else {
        record.status = EventStatus::Rejected;
        record.error = Some(ItemError {
            code: "source_removed".into(),
            message: format!("source `{}` has no `{}` environment any more", raw.source, raw.environment),
        });
        record.raw = Some(raw.item.clone());
        return Translated { record, claim: None };
    };
    let outcome = normalize_item(&NormalizeInput {
        template: raw.template,
        settings,
        item: &raw.item,
        batch_context: raw.batch_context.as_deref(),
        batch_integrations: raw.batch_integrations.as_deref(),
        headers: &raw.headers,
        implied_type: raw.implied_type.as_deref(),
        received_at: raw.received_at,
        rpc: raw.rpc,
    });
    let mut claim = None;
    match outcome {
        Err(e) => {
            record.status = EventStatus::Rejected;
            record.error = Some(e);
            record.raw = Some(raw.item.clone());
        }
        Ok(n) => {
            // JSON-RPC rows are always deduplicated: both tools resend calls by design, and
            // their key is derived from the call (see tributary_sources::rpc::row).
            if let (true, Some(key)) = (settings.dedup.enabled || raw.rpc, n.idempotency_key.as_deref()) {
                claim = Some(((raw.environment.clone(), raw.source.clone(), key.to_string()), settings.dedup.window_ttl_secs()));
            }
            record.normalized = Some(n);
        }
    }
    Translated { record, claim }
}

fn parse(rec: &Record<'_>) -> Result<RawEvent, StageError> {
    serde_json::from_slice(rec.payload).map_err(|e| StageError::Permanent(format!("raw record is not a RawEvent: {e}")))
}

impl Handler for Translator {
    fn prepare<'a>(&'a self, batch: &'a [Record<'a>]) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // The claims of a batch that was aborted before its commit may still be on their
            // way. Let them land first: claims are plain writes, so a late one could otherwise
            // overwrite a claim this batch makes for another event (one whose first claimant
            // changed, e.g. when a partition of the batch was revoked in between).
            let earlier = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|e| e.into_inner())).writes;
            if let Some(w) = earlier {
                let _ = w.await;
            }
            let raws: Vec<(i32, i64, RawEvent)> =
                batch.iter().filter_map(|r| parse(r).ok().map(|raw| (r.partition, r.offset, raw))).collect();
            // One snapshot for the batch, current as of its newest receipt: every record's
            // configuration is at least as recent as a check of its own would make it. That
            // check is a round trip to the store (spaced from the last one), so
            // the batch is translated and its keys read with the snapshot held meanwhile; if the
            // check brings a different one (the configuration changed: rare), all of it is done
            // again with that.
            let newest = raws.iter().map(|(_, _, r)| r.received_at).max().unwrap_or(0);
            let held: Arc<Snapshot> = self.cache.get();
            let (checked, ahead) =
                tokio::join!(metrics::config_as_of(&self.cache, "translator", newest), self.translate_batch(&held, &raws));
            let (prepared, wanted, mut holders) =
                if Arc::ptr_eq(&checked, &held) { ahead } else { self.translate_batch(&checked, &raws).await };
            let claims = decide_claims(wanted, &mut holders);
            // Written while the records are handled and produced, not after: the claims only
            // have to be durable before the commit, and this takes their round trip (about a
            // sixth of a batch's cycle at half load) off the batch's path.
            let store = self.store.clone();
            let writes = tokio::spawn(async move { store.write_claims(claims, CLAIM_CONCURRENCY).await });
            *self.batch.lock().unwrap_or_else(|e| e.into_inner()) =
                BatchState { prepared, holders, claimed: HashMap::new(), writes: Some(writes) };
        })
    }

    fn before_commit(&self) -> BoxFuture<'_, Result<(), StageError>> {
        Box::pin(async move {
            // What `prepare` started writing, and the claims made while handling.
            let BatchState { writes: started, claimed, .. } = std::mem::take(&mut *self.batch.lock().unwrap_or_else(|e| e.into_inner()));
            let late: Vec<NewClaim> = claimed.into_iter().map(|(k, (id, window))| (k, id, window)).collect();
            let mut failures = match started {
                Some(w) => w.await.map_err(|e| StageError::Transient(format!("writing the batch's dedup claims: {e}")))?,
                None => Vec::new(),
            };
            failures.extend(self.store.write_claims(late, CLAIM_CONCURRENCY).await);
            let mut transient = None;
            for ((k, id, _), e) in failures {
                if e.is_transient() {
                    transient = Some(e);
                } else {
                    // The store will never take this claim (its read went through, so this is
                    // not the key's size): the event goes on undeduplicated rather than stall
                    // every batch after it. Said loudly, with what would have been claimed.
                    metrics::DEDUP_CLAIMS_REFUSED.inc();
                    tracing::error!(environment = %k.0, source = %k.1, event_id = %id, error = %e, "the store refused a dedup claim; the event goes on without it");
                }
            }
            match transient {
                // The transaction is aborted and the batch redone, claims and all.
                Some(e) => Err(StageError::Transient(format!("writing the batch's dedup claims: {e}"))),
                None => Ok(()),
            }
        })
    }

    fn handle<'a>(&'a self, rec: &'a Record<'a>) -> BoxFuture<'a, Result<(), StageError>> {
        Box::pin(async move {
            let prepared = self.batch.lock().unwrap_or_else(|e| e.into_inner()).prepared.remove(&(rec.partition, rec.offset));
            let record = match prepared {
                Some(mut t) => {
                    self.claim(&mut t).await?;
                    t.record
                }
                None => self.translate(parse(rec)?).await?,
            };
            let bytes = serde_json::to_vec(&record).map_err(|e| StageError::Permanent(e.to_string()))?;
            self.producer
                .send(&self.out_topic, &record.partition_key(), &bytes, &[("event_id", &record.event_id)])
                .await
                .map_err(|e| StageError::Transient(e.to_string()))?;
            metrics::EVENTS.with_label_values(&["translator", record.status.as_str()]).inc();
            metrics::observe_delay("translator", record.received_at);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{decide_claims, ClaimKey, NewClaim};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(k: u8) -> ClaimKey {
        ("development".into(), "shop".into(), format!("k{k}"))
    }

    proptest! {
        /// Whatever the batch: every key nobody held is claimed once, by the first event that
        /// wants it; a held key or an unread one is never claimed; afterwards every read key
        /// names the event that holds it.
        #[test]
        fn the_first_event_with_an_unheld_key_claims_it(
            wants in proptest::collection::vec(0u8..12, 0..60),
            held in proptest::collection::hash_map(0u8..12, proptest::option::of("[a-z]{1,3}"), 0..12),
        ) {
            let wanted: Vec<NewClaim> = wants.iter().enumerate().map(|(i, k)| (key(*k), format!("evt-{i}"), 60)).collect();
            let before: HashMap<ClaimKey, Option<String>> = held.iter().map(|(k, h)| (key(*k), h.clone())).collect();
            let mut holders = before.clone();
            let claims = decide_claims(wanted.clone(), &mut holders);
            let mut claimed = HashMap::new();
            for (k, id, window) in &claims {
                prop_assert_eq!(*window, 60);
                prop_assert!(claimed.insert(k.clone(), id.clone()).is_none(), "{:?} claimed twice", k);
            }
            for (k, h) in &before {
                let first = wanted.iter().find(|(w, _, _)| w == k).map(|(_, id, _)| id.clone());
                match (h, first) {
                    (None, Some(first)) => {
                        prop_assert_eq!(claimed.get(k), Some(&first));
                        prop_assert_eq!(holders.get(k), Some(&Some(first)));
                    }
                    (h, _) => {
                        prop_assert!(!claimed.contains_key(k));
                        prop_assert_eq!(holders.get(k), Some(h));
                    }
                }
            }
            // Keys that were not read are never claimed here, nor made up in `holders`.
            prop_assert!(claimed.keys().all(|k| before.contains_key(k)));
            prop_assert_eq!(holders.len(), before.len());
        }
    }
}
