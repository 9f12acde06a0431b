//! Cassandra/ScyllaDB at the edges: schema, configuration store, event/action logs, users.
