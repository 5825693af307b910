//! # driftwatch-codec
//!
//! Encode/decode of every record on driftwatch's topics.
