//! The HTTP gateway: token lookup, verification, splitting and keying, durable produce to the raw topic.
