//! Structured logs with `tracing`: JSON lines by default, one field per fact.

use crate::config::LogConfig;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    // Colour codes only for a person at a terminal: in a file or a pipe they are noise that
    // breaks grep and log shippers.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // try_init: a second call (tests, `all`) keeps the first subscriber.
    let _ = if cfg.format == "json" {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.try_init()
    };
}
