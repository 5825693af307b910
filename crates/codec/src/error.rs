//! The one error type of the codec crate.
//!
//! Every failure to read or write a record ends up here, with a kind that the worker can put in
//! a dead-letter header ([`CodecError::kind`]) and a flag telling whether trying again could help
//! ([`CodecError::is_retryable`]). The type is `Clone` so that a schema that failed to parse once
//! can report the same error to every later caller.

use thiserror::Error;

/// Result of every fallible function of this crate.
pub type Result<T> = std::result::Result<T, CodecError>;

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The input ended in the middle of a value.
    #[error("truncated input: needed {needed} more byte(s) at offset {offset}")]
    Truncated { offset: usize, needed: usize },

    /// The bytes are not a valid encoding of the expected record.
    #[error("invalid data: {0}")]
    InvalidData(String),

    /// A string on the wire is not valid UTF-8.
    #[error("invalid UTF-8 in a string at offset {offset}")]
    InvalidUtf8 { offset: usize },

    /// A Confluent-framed payload names a schema id that was not registered.
    #[error("unknown writer schema id {0}")]
    UnknownSchemaId(u32),

    /// The schema registry has no Avro schema of this id (or one that cannot be parsed).
    #[error("writer schema id {id}: {reason}")]
    RegistrySchema { id: u32, reason: String },

    /// A writer schema cannot be read with the reader schema.
    #[error("incompatible schemas: {0}")]
    IncompatibleSchemas(String),

    /// The payload is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    Oversized { size: usize, limit: usize },

    /// A required field is absent (JSON) or has no value (Avro).
    #[error("missing required field `{0}`")]
    MissingField(String),

    /// The JSON text is malformed or does not have the documented shape.
    #[error("JSON: {0}")]
    Json(String),

    /// An embedded or registered Avro schema is malformed.
    #[error("schema {name}: {message}")]
    Schema { name: String, message: String },
}

impl CodecError {
    /// A short, stable name of the error kind, used as the value of a dead-letter header.
    pub fn kind(&self) -> &'static str {
        match self {
            CodecError::Truncated { .. } => "truncated",
            CodecError::InvalidData(_) => "invalid_data",
            CodecError::InvalidUtf8 { .. } => "invalid_utf8",
            CodecError::UnknownSchemaId(_) => "unknown_schema_id",
            CodecError::RegistrySchema { .. } => "registry_schema",
            CodecError::IncompatibleSchemas(_) => "incompatible_schemas",
            CodecError::Oversized { .. } => "oversized",
            CodecError::MissingField(_) => "missing_field",
            CodecError::Json(_) => "json",
            CodecError::Schema { .. } => "schema",
        }
    }

    /// Whether the same input could succeed later. Decoding is a pure function of the bytes and
    /// of the writer schemas, which never change for an id, so no codec error is: the record
    /// belongs in the dead-letter topic, not in a retry loop. (A registry that does not answer
    /// is not a codec error: its records wait, see [`crate::registry`].)
    pub fn is_retryable(&self) -> bool {
        false
    }

    pub(crate) fn invalid(what: impl Into<String>) -> Self {
        CodecError::InvalidData(what.into())
    }
}

impl From<serde_json::Error> for CodecError {
    fn from(e: serde_json::Error) -> Self {
        CodecError::Json(e.to_string())
    }
}

impl From<apache_avro::Error> for CodecError {
    fn from(e: apache_avro::Error) -> Self {
        CodecError::InvalidData(format!("avro: {e}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct_and_nothing_is_retryable() {
        let all = [
            CodecError::Truncated {
                offset: 0,
                needed: 1,
            },
            CodecError::invalid("x"),
            CodecError::InvalidUtf8 { offset: 3 },
            CodecError::UnknownSchemaId(7),
            CodecError::IncompatibleSchemas("x".into()),
            CodecError::RegistrySchema {
                id: 1,
                reason: "x".into(),
            },
            CodecError::Oversized { size: 2, limit: 1 },
            CodecError::MissingField("request_id".into()),
            CodecError::Json("x".into()),
            CodecError::Schema {
                name: "A.avsc".into(),
                message: "x".into(),
            },
        ];
        let mut kinds: Vec<_> = all.iter().map(CodecError::kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), all.len());
        assert!(all.iter().all(|e| !e.is_retryable()));
        assert!(all.iter().all(|e| !e.to_string().is_empty()));
    }
}
