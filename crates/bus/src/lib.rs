//! Kafka at the edges: topics, producer settings, consumer loop with at-least-once commits.
