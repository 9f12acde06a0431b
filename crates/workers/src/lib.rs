//! The worker stages: translator, mapper and executor consumer groups.
