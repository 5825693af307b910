//! # driftwatch-oip
//!
//! Sans-I/O decoders of what common model servers put on Kafka, in the Open Inference
//! Protocol, into driftwatch's canonical [`Prediction`](driftwatch_core::Prediction):
//!
//! - [`seldon`]: Seldon Core 2 model topics, protobuf `ModelInferRequest` /
//!   `ModelInferResponse` ([`proto`]), request id in the `x-request-id` header;
//! - [`kserve`]: KServe inference-logger CloudEvents, binary and structured content modes, v1
//!   and v2 JSON bodies.
//!
//! Each record decodes to one [`InferenceHalf`] (request or response: id, model, tensors);
//! the pairing stage joins the two halves of an inference by id (`driftwatch_core::pairing`)
//! and [`SourceMapping::predictions`] maps the pair to predictions. [`SourceConfig`] is the
//! `[[sources]]` entry a user writes. Every failure is a [`SourceError`] whose
//! [`kind`](SourceError::kind) is the dead-letter reason.
//!
//! [`SourceIntake`] is the whole decode → pair → map path of one source, with its counters,
//! for a Kafka stage to wrap.
//!
//! No Kafka client here: a record is a [`Message`] of borrowed topic, headers and value.

pub mod config;
pub mod error;
pub mod half;
pub mod intake;
pub mod kserve;
pub mod mapping;
pub mod proto;
pub mod seldon;
pub mod tensor;

pub use config::{KserveConfig, SeldonConfig, SourceConfig};
pub use error::{Result, SourceError};
pub use half::{HalfKind, InferenceHalf, Message};
pub use intake::{IntakeCounters, Output, PendingChange, SourceIntake};
pub use mapping::{FeatureMap, PredictionAs, PredictionMap, ScoresMap, SourceMapping, ValueFrom};
pub use tensor::{Datatype, Elements, Tensor};

#[cfg(test)]
mod intake_tests;
#[cfg(test)]
mod tests;
