//! The source layer: envelopes, signature verification, normalization to the common format, identify merge. Pure.
