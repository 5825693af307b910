//! The wire contract: the Avro schemas of `schemas/*.avsc`, embedded at compile time.
//!
//! The `.avsc` files are the source of truth (they are what other teams read and what the
//! compatibility test compares with `schemas/released/`), so they are embedded with
//! `include_str!` rather than rebuilt in Rust. They are parsed once, on first use. A malformed
//! file is reported as one [`CodecError::Schema`] naming the file, to every caller, instead of a
//! panic at start-up.

use std::sync::LazyLock;

use apache_avro::Schema;

use crate::error::{CodecError, Result};

/// The records that travel on driftwatch's topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Prediction,
    GroundTruth,
    DriftEvent,
    RetrainEvent,
    ModelMetrics,
    ModelPartial,
    ModelReference,
}

impl RecordKind {
    /// Every kind, in a fixed order.
    pub const ALL: [RecordKind; 7] = [
        RecordKind::Prediction,
        RecordKind::GroundTruth,
        RecordKind::DriftEvent,
        RecordKind::RetrainEvent,
        RecordKind::ModelMetrics,
        RecordKind::ModelPartial,
        RecordKind::ModelReference,
    ];

    /// File name of the schema under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            RecordKind::Prediction => "Prediction.avsc",
            RecordKind::GroundTruth => "GroundTruth.avsc",
            RecordKind::DriftEvent => "DriftEvent.avsc",
            RecordKind::RetrainEvent => "RetrainEvent.avsc",
            RecordKind::ModelMetrics => "ModelMetrics.avsc",
            RecordKind::ModelPartial => "ModelPartial.avsc",
            RecordKind::ModelReference => "ModelReference.avsc",
        }
    }

    /// The schema's JSON text as embedded in the binary.
    pub fn schema_text(self) -> &'static str {
        match self {
            RecordKind::Prediction => include_str!("../../../schemas/Prediction.avsc"),
            RecordKind::GroundTruth => include_str!("../../../schemas/GroundTruth.avsc"),
            RecordKind::DriftEvent => include_str!("../../../schemas/DriftEvent.avsc"),
            RecordKind::RetrainEvent => include_str!("../../../schemas/RetrainEvent.avsc"),
            RecordKind::ModelMetrics => include_str!("../../../schemas/ModelMetrics.avsc"),
            RecordKind::ModelPartial => include_str!("../../../schemas/ModelPartial.avsc"),
            RecordKind::ModelReference => include_str!("../../../schemas/ModelReference.avsc"),
        }
    }

    /// The parsed current schema of this record kind.
    pub fn schema(self) -> Result<&'static Schema> {
        let all = schemas()?;
        Ok(match self {
            RecordKind::Prediction => &all.prediction,
            RecordKind::GroundTruth => &all.ground_truth,
            RecordKind::DriftEvent => &all.drift_event,
            RecordKind::RetrainEvent => &all.retrain_event,
            RecordKind::ModelMetrics => &all.model_metrics,
            RecordKind::ModelPartial => &all.model_partial,
            RecordKind::ModelReference => &all.model_reference,
        })
    }
}

/// All current schemas, parsed.
#[derive(Debug)]
pub struct Schemas {
    pub prediction: Schema,
    pub ground_truth: Schema,
    pub drift_event: Schema,
    pub retrain_event: Schema,
    pub model_metrics: Schema,
    pub model_partial: Schema,
    pub model_reference: Schema,
}

static SCHEMAS: LazyLock<Result<Schemas>> = LazyLock::new(|| {
    let parse = |kind: RecordKind| parse_named(kind.file_name(), kind.schema_text());
    Ok(Schemas {
        prediction: parse(RecordKind::Prediction)?,
        ground_truth: parse(RecordKind::GroundTruth)?,
        drift_event: parse(RecordKind::DriftEvent)?,
        retrain_event: parse(RecordKind::RetrainEvent)?,
        model_metrics: parse(RecordKind::ModelMetrics)?,
        model_partial: parse(RecordKind::ModelPartial)?,
        model_reference: parse(RecordKind::ModelReference)?,
    })
});

/// All current schemas, parsed on first call.
pub fn schemas() -> Result<&'static Schemas> {
    SCHEMAS.as_ref().map_err(Clone::clone)
}

/// The current `Prediction` schema.
pub fn prediction() -> Result<&'static Schema> {
    RecordKind::Prediction.schema()
}

/// The current `GroundTruth` schema.
pub fn ground_truth() -> Result<&'static Schema> {
    RecordKind::GroundTruth.schema()
}

/// Parses one schema, naming `name` (a file name or a registry id) in the error.
pub fn parse_named(name: &str, text: &str) -> Result<Schema> {
    Schema::parse_str(text).map_err(|e| CodecError::Schema {
        name: name.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_parses_as_a_record_in_the_project_namespace() {
        for kind in RecordKind::ALL {
            let schema = kind.schema().unwrap();
            let Schema::Record(record) = schema else {
                panic!("{} is not a record", kind.file_name());
            };
            assert_eq!(
                record.name.fullname(None),
                format!(
                    "io.driftwatch.{}",
                    kind.file_name().trim_end_matches(".avsc")
                )
            );
        }
    }

    #[test]
    fn malformed_schema_error_names_the_file() {
        let err = parse_named("Broken.avsc", r#"{"type": "record", "name": "X""#).unwrap_err();
        assert_eq!(err.kind(), "schema");
        assert!(err.to_string().contains("Broken.avsc"), "{err}");
    }

    /// Walks the schema JSON and collects every record or field that has no `doc`.
    fn undocumented(value: &serde_json::Value, path: &str, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(obj) => {
                let is_record = obj.get("type").and_then(|t| t.as_str()) == Some("record");
                if is_record && !obj.contains_key("doc") {
                    out.push(path.to_owned());
                }
                if let Some(fields) = obj.get("fields").and_then(|f| f.as_array()) {
                    for field in fields {
                        let name = field.get("name").and_then(|n| n.as_str()).unwrap_or("?");
                        let field_path = format!("{path}.{name}");
                        if field
                            .get("doc")
                            .and_then(|d| d.as_str())
                            .is_none_or(str::is_empty)
                        {
                            out.push(field_path.clone());
                        }
                        if let Some(t) = field.get("type") {
                            undocumented(t, &field_path, out);
                        }
                    }
                }
                for key in ["items", "values"] {
                    if let Some(inner) = obj.get(key) {
                        undocumented(inner, path, out);
                    }
                }
            }
            serde_json::Value::Array(branches) => {
                for b in branches {
                    undocumented(b, path, out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_record_and_field_has_a_doc() {
        for kind in RecordKind::ALL {
            let json: serde_json::Value = serde_json::from_str(kind.schema_text()).unwrap();
            let mut missing = Vec::new();
            undocumented(&json, kind.file_name(), &mut missing);
            assert!(missing.is_empty(), "undocumented: {missing:?}");
        }
    }
}
