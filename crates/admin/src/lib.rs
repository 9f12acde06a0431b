//! The control plane: admin HTTP API over the configuration store and the logs.
