//! The one error type of the Open Inference Protocol decoders.
//!
//! Every reason a message from a model server cannot become (half of) a prediction ends here,
//! with a short stable [`SourceError::kind`] that the worker puts in the dead-letter header.
//! Decoding is a pure function of the message and of the mapping fixed at start-up, so nothing
//! here is retryable: the message belongs in the dead-letter topic, not in a retry loop.

use thiserror::Error;

/// Result of every fallible function of this crate.
pub type Result<T> = std::result::Result<T, SourceError>;

/// Why a message from a model server could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SourceError {
    /// No request id: Seldon's `x-request-id` header, the CloudEvent `id`, or the payload's
    /// `id` field (whichever the source reads) is absent or empty.
    #[error("missing request id: {0}")]
    MissingRequestId(String),

    /// The content type is not one this source reads (binary CloudEvents need
    /// `application/json`; structured ones `application/cloudevents+json`).
    #[error("unknown content type `{0}`")]
    UnknownContentType(String),

    /// The CloudEvent `type` is neither an inference request nor an inference response.
    #[error("unknown event type `{0}`")]
    UnknownEventType(String),

    /// The value is not a protobuf `ModelInferRequest` / `ModelInferResponse`.
    #[error("protobuf: {0}")]
    Protobuf(String),

    /// The value (or a CloudEvent's data) is not JSON of the documented shape.
    #[error("JSON: {0}")]
    Json(String),

    /// A tensor's element count does not match its shape, or the shape is not what the mapping
    /// needs (rows, columns).
    #[error("tensor `{tensor}`: shape: {message}")]
    Shape { tensor: String, message: String },

    /// A tensor's data does not have its declared datatype, or the datatype is not one the
    /// mapping can use.
    #[error("tensor `{tensor}`: datatype: {message}")]
    Datatype { tensor: String, message: String },

    /// A tensor the mapping names is not in the message.
    #[error("missing tensor `{0}`")]
    MissingTensor(String),

    /// The model id or version the mapping asks for is not in the topic, header or field.
    #[error("missing model {0}")]
    MissingModel(String),

    /// The request and the response of one inference do not have the same number of rows.
    #[error("request has {request} row(s), response {response}")]
    RowCountMismatch { request: usize, response: usize },

    /// A value cannot become a feature, a prediction or a score (e.g. a class index beyond the
    /// configured labels, a non-finite score).
    #[error("invalid value: {0}")]
    InvalidValue(String),
}

impl SourceError {
    /// A short, stable name of the error kind, used as the value of a dead-letter header.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::MissingRequestId(_) => "missing_request_id",
            SourceError::UnknownContentType(_) => "unknown_content_type",
            SourceError::UnknownEventType(_) => "unknown_event_type",
            SourceError::Protobuf(_) => "protobuf",
            SourceError::Json(_) => "json",
            SourceError::Shape { .. } => "tensor_shape",
            SourceError::Datatype { .. } => "tensor_datatype",
            SourceError::MissingTensor(_) => "missing_tensor",
            SourceError::MissingModel(_) => "missing_model",
            SourceError::RowCountMismatch { .. } => "row_count_mismatch",
            SourceError::InvalidValue(_) => "invalid_value",
        }
    }

    /// Whether the same input could succeed later: never, see the module doc.
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn shape(tensor: &str, message: impl Into<String>) -> Self {
        SourceError::Shape {
            tensor: tensor.to_owned(),
            message: message.into(),
        }
    }

    pub(crate) fn datatype(tensor: &str, message: impl Into<String>) -> Self {
        SourceError::Datatype {
            tensor: tensor.to_owned(),
            message: message.into(),
        }
    }
}

impl From<serde_json::Error> for SourceError {
    fn from(e: serde_json::Error) -> Self {
        SourceError::Json(e.to_string())
    }
}

impl From<prost::DecodeError> for SourceError {
    fn from(e: prost::DecodeError) -> Self {
        SourceError::Protobuf(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_nothing_is_retryable() {
        let all = [
            SourceError::MissingRequestId("x".into()),
            SourceError::UnknownContentType("x".into()),
            SourceError::UnknownEventType("x".into()),
            SourceError::Protobuf("x".into()),
            SourceError::Json("x".into()),
            SourceError::shape("t", "x"),
            SourceError::datatype("t", "x"),
            SourceError::MissingTensor("t".into()),
            SourceError::MissingModel("id".into()),
            SourceError::RowCountMismatch {
                request: 1,
                response: 2,
            },
            SourceError::InvalidValue("x".into()),
        ];
        let mut kinds: Vec<_> = all.iter().map(SourceError::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
        assert!(all.iter().all(|e| !e.is_retryable()));
    }
}
