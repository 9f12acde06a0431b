//! Rows bound for one partition, written together: one unlogged batch per partition.
//!
//! Every logged event and action adds a row to a timeline partition (environment, minute,
//! bucket), and a process logging thousands of events a second sends most of them to the same
//! few partitions. Sent alone, each row is a request the database parses, coordinates and
//! answers; gathered, a partition's waiting rows go as one unlogged batch: one request and,
//! since they share the partition, one mutation on one replica set. That is the one case
//! ScyllaDB's and Cassandra's docs recommend batches for (a batch over many partitions only
//! moves the fan-out to the coordinator), and a single-partition batch is exempt from
//! Cassandra's batch-size warning (CASSANDRA-10876).
//!
//! No timer: the first row for an idle partition is sent at once; rows that arrive while that
//! request is out wait and go together in the next one. At light load every row goes alone, as
//! soon as before; under load the batches grow with the writers waiting, so the requests per
//! row fall as the rate rises. A caller returns once its own row is durable (or with the
//! error of the request that carried it).

use crate::counted::CountedSession;
use crate::{db, StoreError};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Rows per batch at most: a timeline row is about 150 bytes, so 100 stay far below
/// ScyllaDB's batch-size warning (128 KiB) even where it counts single-partition batches.
const MAX_ROWS: usize = 100;

/// A timeline partition: (environment, slice, bucket).
pub(crate) type PartitionKey = (String, i64, i32);

type Waiter = oneshot::Sender<Result<(), StoreError>>;

struct Partition<R> {
    /// A request for this partition is out (its drainer is running).
    busy: bool,
    queue: Vec<(R, Waiter)>,
}

impl<R> Default for Partition<R> {
    fn default() -> Self {
        Partition { busy: false, queue: Vec::new() }
    }
}

/// Writes rows of one prepared INSERT, gathered per partition.
pub(crate) struct Coalescer<R> {
    statement: PreparedStatement,
    /// The partition a row belongs to (read from the row: it cannot disagree with it).
    partition_of: fn(&R) -> PartitionKey,
    partitions: Mutex<HashMap<PartitionKey, Partition<R>>>,
}

impl<R: SerializeRow + Send + Sync + 'static> Coalescer<R> {
    pub(crate) fn new(statement: PreparedStatement, partition_of: fn(&R) -> PartitionKey) -> Arc<Self> {
        Arc::new(Coalescer { statement, partition_of, partitions: Mutex::default() })
    }

    /// Write `row`; returns once it is written.
    pub(crate) async fn write(self: &Arc<Self>, session: &Arc<CountedSession>, row: R) -> Result<(), StoreError> {
        let partition = (self.partition_of)(&row);
        let (tx, rx) = oneshot::channel();
        let idle = {
            let mut parts = self.partitions.lock().unwrap();
            let p = parts.entry(partition.clone()).or_default();
            p.queue.push((row, tx));
            !std::mem::replace(&mut p.busy, true)
        };
        if idle {
            // The drainer runs on its own, so no caller waits for other callers' rows.
            tokio::spawn(self.clone().drain(session.clone(), partition));
        }
        rx.await.unwrap_or_else(|_| Err(StoreError::Unavailable("the timeline writer stopped".into())))
    }

    /// Send the partition's waiting rows, a batch at a time, until none is left.
    async fn drain(self: Arc<Self>, session: Arc<CountedSession>, partition: PartitionKey) {
        loop {
            let taken: Vec<(R, Waiter)> = {
                let mut parts = self.partitions.lock().unwrap();
                let Some(p) = parts.get_mut(&partition) else { return };
                if p.queue.is_empty() {
                    // Forget the partition: slices are minutes, the map must not keep them.
                    parts.remove(&partition);
                    return;
                }
                let n = p.queue.len().min(MAX_ROWS);
                p.queue.drain(..n).collect()
            };
            let (rows, waiters): (Vec<R>, Vec<Waiter>) = taken.into_iter().unzip();
            let result = if rows.len() == 1 {
                session.execute_unpaged(&self.statement, &rows[0]).await.map(drop)
            } else {
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in 0..rows.len() {
                    batch.append_statement(self.statement.clone());
                }
                session.batch(&batch, &rows).await.map(drop)
            }
            .map_err(db);
            for w in waiters {
                let _ = w.send(result.clone());
            }
        }
    }
}
