//! What every long-running role shares: configuration, logging, the health/metrics endpoint,
//! and graceful shutdown.

pub mod body_deadline;
pub mod config;
pub mod health;
pub mod http_errors;
pub mod logging;
pub mod serve;
pub mod shutdown;

pub use config::{Config, ConfigError};
pub use health::{serve_health, Readiness};
pub use serve::serve;
pub use shutdown::Shutdown;
