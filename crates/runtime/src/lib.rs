//! What every long-running role shares: configuration, logging, the health/metrics endpoint,
//! and graceful shutdown.

pub mod config;
pub mod health;
pub mod http_errors;
pub mod logging;
pub mod shutdown;

pub use config::{Config, ConfigError};
pub use health::{serve_health, Readiness};
pub use shutdown::Shutdown;
