//! Kafka at the edges: topic names, the producer (settings chosen on purpose, see
//! [`producer`]), topic creation, and the consumer loop every stage runs ([`stage`]).

mod exactly_once;
pub mod lag;
mod lanes;
mod metrics;
pub mod producer;
pub mod stage;
pub mod topics;

pub use producer::{Producer, ProduceError};
pub use stage::{run_stage, Delivery, Handler, Record, StageError, StageOptions};
pub use producer::{worker_producer, ProducerSettings, TxnError};
pub use topics::{delete_topics, ensure_topics, Topics};
pub use lag::{spawn_monitor as spawn_lag_monitor, LagTarget};
