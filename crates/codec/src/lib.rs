//! # driftwatch-codec
//!
//! Encode/decode of every record on driftwatch's topics. The wire contract is the set of Avro
//! schemas in `schemas/*.avsc` (embedded by [`schema`]); this crate reads and writes it.
//!
//! - [`borrowed`]: the hot path. Resolving, non-allocating decoders for `Prediction` and
//!   `GroundTruth` that hand out borrowed slices of the input and report features to a visitor.
//! - [`encode`]: direct encoders for those two records (also for load generators).
//! - [`avro`]: the Avro datum of every record through one trait, [`AvroRecord`], including
//!   reading datums of older/newer writer schemas.
//! - [`format`]: which encoding (JSON, framed or bare Avro) a payload is in, from its first
//!   bytes.
//! - [`framing`]: Confluent Schema Registry framing and per-schema-id decoder selection.
//! - [`registry`]: writer schemas by id from a Confluent-compatible Schema Registry: the
//!   answers read and the per-id state (fetching with backoff, absent), without I/O.
//! - [`json`]: the JSON form of every record, for teams that do not use Avro.
//! - [`error`]: [`CodecError`], with a stable `kind()` for dead-letter headers.
//!
//! [`wire`] and [`resolve`] are the building blocks: bounds-checked Avro primitives and the
//! writer-schema compilation (skippers, promotions, union branch mapping) behind the decoders.

pub mod avro;
pub mod borrowed;
pub mod encode;
pub mod error;
pub mod format;
pub mod framing;
pub mod json;
pub mod registration;
pub mod registry;
pub mod resolve;
pub mod schema;
pub mod wire;

pub use avro::{from_avro, from_avro_resolving, to_avro, AvroRecord};
pub use borrowed::{
    decode_ground_truth, decode_prediction, FeatureRef, GroundTruthDecoder, GroundTruthRef,
    PredictionDecoder, PredictionRef, PredictionVisitor,
};
pub use encode::{encode_ground_truth, encode_prediction, encode_prediction_parts};
pub use error::{CodecError, Result};
pub use format::PayloadFormat;
pub use framing::{
    encode_framed, split_framed, DecoderSet, GroundTruthDecoders, PredictionDecoders, WriterSchemas,
};
pub use json::{from_json, from_json_slice, to_json, JsonRecord};
pub use schema::RecordKind;
