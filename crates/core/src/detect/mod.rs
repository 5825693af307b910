//! Streaming change detectors.
