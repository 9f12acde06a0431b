//! What every long-running role shares: configuration, logging, metrics, health endpoints, shutdown.
