//! The JSON form of every record, for producers and consumers that do not use Avro.
//!
//! The shape follows the Avro schemas field for field (see `schemas/README.md`):
//! - Avro maps are JSON objects, e.g. `"features": {"age": 31.0, "country": "DE", "x": null}`;
//!   a feature value is a number, a string, or null (missing);
//! - timestamps are integers, milliseconds since the Unix epoch;
//! - enums are their symbol as a string (`"DRIFT"`); optional fields are `null` or absent.
//!
//! Objects are read in document order into the records' `Vec<(String, _)>` maps by a small
//! visitor ([`OrderedMap`]), rather than through `serde_json::Map`, so the order survives
//! without switching on serde_json's `preserve_order` for the whole workspace. Duplicate keys
//! are rejected. JSON has no NaN or infinity, so encoding a non-finite number is an error rather
//! than the silent `null` serde_json would write.
//!
//! Unknown fields are ignored in `Prediction` and `GroundTruth` (an external producer may be on
//! a newer schema, as Avro resolution would allow) and rejected in the records driftwatch writes
//! itself.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use driftwatch_core::{
    DriftEvent, FeatureValue, GroundTruth, ModelMetrics, ModelPartial, ModelReference, Prediction,
    RetrainEvent, TimestampMs,
};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::error::{CodecError, Result};

/// A record with a JSON form.
pub trait JsonRecord: Sized {
    /// Encodes the record as compact JSON.
    fn to_json(&self) -> Result<String>;
    /// Decodes the record from JSON bytes.
    fn from_json_slice(bytes: &[u8]) -> Result<Self>;
}

/// Encodes `record` as compact JSON.
pub fn to_json<T: JsonRecord>(record: &T) -> Result<String> {
    record.to_json()
}

/// Decodes a record from JSON text.
pub fn from_json<T: JsonRecord>(text: &str) -> Result<T> {
    T::from_json_slice(text.as_bytes())
}

/// Decodes a record from JSON bytes (e.g. a Kafka payload).
pub fn from_json_slice<T: JsonRecord>(bytes: &[u8]) -> Result<T> {
    T::from_json_slice(bytes)
}

fn finite(field: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(CodecError::invalid(format!(
            "{field}: {v} cannot be represented in JSON"
        )))
    }
}

fn finite_map(field: &str, entries: &[(String, f64)]) -> Result<()> {
    for (k, v) in entries {
        finite(&format!("{field}.{k}"), *v)?;
    }
    Ok(())
}

fn require<T>(v: Option<T>, field: &str) -> Result<T> {
    v.ok_or_else(|| CodecError::MissingField(field.to_owned()))
}

fn non_empty_request_id(id: String) -> Result<String> {
    if id.is_empty() {
        Err(CodecError::invalid("empty request_id"))
    } else {
        Ok(id)
    }
}

/// Serializes a `Vec<(String, V)>` as a JSON object, in order.
struct MapRef<'r, V>(&'r [(String, V)]);

impl<V: Serialize> Serialize for MapRef<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// A JSON object read into a `Vec` in document order; duplicate keys are an error.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderedMap<V>(pub Vec<(String, V)>);

impl<V> Default for OrderedMap<V> {
    fn default() -> Self {
        OrderedMap(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = OrderedMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut a: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, V)> = Vec::with_capacity(a.size_hint().unwrap_or(0));
                let mut seen = HashSet::new();
                while let Some(k) = a.next_key::<String>()? {
                    if !seen.insert(k.clone()) {
                        return Err(de::Error::custom(format!("duplicate key `{k}`")));
                    }
                    let v = a.next_value()?;
                    entries.push((k, v));
                }
                Ok(OrderedMap(entries))
            }
        }
        d.deserialize_map(V2(PhantomData))
    }
}

/// A feature value in JSON: number, string or null.
struct JsonFeature(FeatureValue);

impl<'de> Deserialize<'de> for JsonFeature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct FV;
        impl Visitor<'_> for FV {
            type Value = JsonFeature;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a feature value: a number, a string or null")
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Missing))
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Missing))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Number(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Number(v as f64)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Number(v as f64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Category(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Self::Value, E> {
                Ok(JsonFeature(FeatureValue::Category(v)))
            }
        }
        d.deserialize_any(FV)
    }
}

// ---- Prediction ----------------------------------------------------------------------------

#[derive(Serialize)]
struct PredictionOut<'r> {
    request_id: &'r str,
    model_id: &'r str,
    model_version: &'r str,
    timestamp: TimestampMs,
    features: MapRef<'r, FeatureValue>,
    predicted_label: Option<&'r str>,
    predicted_value: Option<f64>,
    scores: Option<MapRef<'r, f64>>,
    tags: MapRef<'r, String>,
}

#[derive(Deserialize)]
struct PredictionIn {
    request_id: Option<String>,
    model_id: Option<String>,
    model_version: Option<String>,
    timestamp: Option<TimestampMs>,
    #[serde(default)]
    features: OrderedMap<JsonFeature>,
    #[serde(default)]
    predicted_label: Option<String>,
    #[serde(default)]
    predicted_value: Option<f64>,
    #[serde(default)]
    scores: Option<OrderedMap<f64>>,
    #[serde(default)]
    tags: OrderedMap<String>,
}

impl JsonRecord for Prediction {
    fn to_json(&self) -> Result<String> {
        for (k, v) in &self.features {
            if let FeatureValue::Number(x) = v {
                finite(&format!("features.{k}"), *x)?;
            }
        }
        if let Some(v) = self.predicted_value {
            finite("predicted_value", v)?;
        }
        if let Some(scores) = &self.scores {
            finite_map("scores", scores)?;
        }
        Ok(serde_json::to_string(&PredictionOut {
            request_id: &self.request_id,
            model_id: &self.model_id,
            model_version: &self.model_version,
            timestamp: self.timestamp,
            features: MapRef(&self.features),
            predicted_label: self.predicted_label.as_deref(),
            predicted_value: self.predicted_value,
            scores: self.scores.as_deref().map(MapRef),
            tags: MapRef(&self.tags),
        })?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        let p: PredictionIn = serde_json::from_slice(bytes)?;
        Ok(Prediction {
            request_id: non_empty_request_id(require(p.request_id, "request_id")?)?,
            model_id: require(p.model_id, "model_id")?,
            model_version: require(p.model_version, "model_version")?,
            timestamp: require(p.timestamp, "timestamp")?,
            features: p.features.0.into_iter().map(|(k, v)| (k, v.0)).collect(),
            predicted_label: p.predicted_label,
            predicted_value: p.predicted_value,
            scores: p.scores.map(|s| s.0),
            tags: p.tags.0,
        })
    }
}

// ---- GroundTruth ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct GroundTruthIn {
    request_id: Option<String>,
    #[serde(default)]
    model_id: Option<String>,
    timestamp: Option<TimestampMs>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    value: Option<f64>,
}

impl JsonRecord for GroundTruth {
    fn to_json(&self) -> Result<String> {
        if let Some(v) = self.value {
            finite("value", v)?;
        }
        // The derived form of the core type is exactly the documented JSON form.
        Ok(serde_json::to_string(self)?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        let g: GroundTruthIn = serde_json::from_slice(bytes)?;
        Ok(GroundTruth {
            request_id: non_empty_request_id(require(g.request_id, "request_id")?)?,
            model_id: g.model_id,
            timestamp: require(g.timestamp, "timestamp")?,
            label: g.label,
            value: g.value,
        })
    }
}

// ---- records driftwatch writes -------------------------------------------------------------

impl JsonRecord for DriftEvent {
    fn to_json(&self) -> Result<String> {
        finite("value", self.value)?;
        finite("threshold", self.threshold)?;
        finite("severity", self.severity)?;
        Ok(serde_json::to_string(self)?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl JsonRecord for ModelPartial {
    fn to_json(&self) -> Result<String> {
        let r = &self.regression;
        for (field, v) in [
            ("regression.abs_error_sum", r.abs_error_sum),
            ("regression.squared_error_sum", r.squared_error_sum),
            ("regression.error_sum", r.error_sum),
            ("regression.abs_pct_error_sum", r.abs_pct_error_sum),
            ("log_loss_sum", self.log_loss_sum),
            ("brier_sum", self.brier_sum),
            ("received_score_sum", self.received_score_sum),
            ("scored_score_sum", self.scored_score_sum),
        ] {
            finite(field, v)?;
        }
        for c in &self.class_scores {
            finite("class_scores.received_score_sum", c.received_score_sum)?;
            finite("class_scores.scored_score_sum", c.scored_score_sum)?;
        }
        Ok(serde_json::to_string(self)?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

impl JsonRecord for ModelReference {
    fn to_json(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[derive(Serialize)]
struct RetrainEventOut<'r> {
    event_id: &'r str,
    model_id: &'r str,
    model_version: &'r str,
    reasons: &'r [String],
    drift_event_ids: &'r [String],
    metrics: MapRef<'r, f64>,
    train_from: TimestampMs,
    train_to: TimestampMs,
    dry_run: bool,
    created_at: TimestampMs,
    estimated_decay_per_day: Option<f64>,
    suggested_retrain_interval_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrainEventIn {
    event_id: String,
    model_id: String,
    model_version: String,
    reasons: Vec<String>,
    drift_event_ids: Vec<String>,
    metrics: OrderedMap<f64>,
    train_from: TimestampMs,
    train_to: TimestampMs,
    dry_run: bool,
    created_at: TimestampMs,
    #[serde(default)]
    estimated_decay_per_day: Option<f64>,
    #[serde(default)]
    suggested_retrain_interval_ms: Option<i64>,
}

impl JsonRecord for RetrainEvent {
    fn to_json(&self) -> Result<String> {
        finite_map("metrics", &self.metrics)?;
        Ok(serde_json::to_string(&RetrainEventOut {
            event_id: &self.event_id,
            model_id: &self.model_id,
            model_version: &self.model_version,
            reasons: &self.reasons,
            drift_event_ids: &self.drift_event_ids,
            metrics: MapRef(&self.metrics),
            train_from: self.train_from,
            train_to: self.train_to,
            dry_run: self.dry_run,
            created_at: self.created_at,
            estimated_decay_per_day: self.estimated_decay_per_day,
            suggested_retrain_interval_ms: self.suggested_retrain_interval_ms,
        })?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        let r: RetrainEventIn = serde_json::from_slice(bytes)?;
        Ok(RetrainEvent {
            event_id: r.event_id,
            model_id: r.model_id,
            model_version: r.model_version,
            reasons: r.reasons,
            drift_event_ids: r.drift_event_ids,
            metrics: r.metrics.0,
            train_from: r.train_from,
            train_to: r.train_to,
            dry_run: r.dry_run,
            created_at: r.created_at,
            estimated_decay_per_day: r.estimated_decay_per_day,
            suggested_retrain_interval_ms: r.suggested_retrain_interval_ms,
        })
    }
}

#[derive(Serialize)]
struct ModelMetricsOut<'r> {
    model_id: &'r str,
    model_version: &'r str,
    window: &'r str,
    window_start: TimestampMs,
    window_end: TimestampMs,
    predictions: u64,
    labeled: u64,
    label_coverage: f64,
    metrics: MapRef<'r, f64>,
    emitted_at: TimestampMs,
    estimated_decay_per_day: Option<f64>,
    suggested_retrain_interval_ms: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelMetricsIn {
    model_id: String,
    model_version: String,
    window: String,
    window_start: TimestampMs,
    window_end: TimestampMs,
    predictions: u64,
    labeled: u64,
    label_coverage: f64,
    metrics: OrderedMap<f64>,
    emitted_at: TimestampMs,
    #[serde(default)]
    estimated_decay_per_day: Option<f64>,
    #[serde(default)]
    suggested_retrain_interval_ms: Option<i64>,
}

impl JsonRecord for ModelMetrics {
    fn to_json(&self) -> Result<String> {
        finite("label_coverage", self.label_coverage)?;
        finite_map("metrics", &self.metrics)?;
        Ok(serde_json::to_string(&ModelMetricsOut {
            model_id: &self.model_id,
            model_version: &self.model_version,
            window: &self.window,
            window_start: self.window_start,
            window_end: self.window_end,
            predictions: self.predictions,
            labeled: self.labeled,
            label_coverage: self.label_coverage,
            metrics: MapRef(&self.metrics),
            emitted_at: self.emitted_at,
            estimated_decay_per_day: self.estimated_decay_per_day,
            suggested_retrain_interval_ms: self.suggested_retrain_interval_ms,
        })?)
    }

    fn from_json_slice(bytes: &[u8]) -> Result<Self> {
        let m: ModelMetricsIn = serde_json::from_slice(bytes)?;
        Ok(ModelMetrics {
            model_id: m.model_id,
            model_version: m.model_version,
            window: m.window,
            window_start: m.window_start,
            window_end: m.window_end,
            predictions: m.predictions,
            labeled: m.labeled,
            label_coverage: m.label_coverage,
            metrics: m.metrics.0,
            emitted_at: m.emitted_at,
            estimated_decay_per_day: m.estimated_decay_per_day,
            suggested_retrain_interval_ms: m.suggested_retrain_interval_ms,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn features_keep_document_order_and_accept_numbers_strings_and_null() {
        let text = r#"{"request_id":"r1","model_id":"m","model_version":"1","timestamp":1700000000000,
            "features":{"zeta":31,"country":"DE","alpha":null,"x":2.5},"unknown_extra":true}"#;
        let p: Prediction = from_json(text).unwrap();
        let names: Vec<_> = p.features.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["zeta", "country", "alpha", "x"]);
        assert_eq!(p.features[0].1, FeatureValue::Number(31.0));
        assert_eq!(p.features[1].1, FeatureValue::Category("DE".into()));
        assert_eq!(p.features[2].1, FeatureValue::Missing);
        assert_eq!(p.scores, None);
        assert!(p.tags.is_empty());
    }

    #[test]
    fn clear_errors_for_bad_json() {
        let missing =
            from_json::<Prediction>(r#"{"model_id":"m","model_version":"1","timestamp":1}"#)
                .unwrap_err();
        assert_eq!(missing, CodecError::MissingField("request_id".into()));
        let bad_feature = from_json::<Prediction>(
            r#"{"request_id":"r","model_id":"m","model_version":"1","timestamp":1,"features":{"a":true}}"#,
        )
        .unwrap_err();
        assert_eq!(bad_feature.kind(), "json");
        assert!(
            bad_feature
                .to_string()
                .contains("a number, a string or null"),
            "{bad_feature}"
        );
        let dup = from_json::<Prediction>(
            r#"{"request_id":"r","model_id":"m","model_version":"1","timestamp":1,"tags":{"a":"1","a":"2"}}"#,
        )
        .unwrap_err();
        assert!(dup.to_string().contains("duplicate key `a`"), "{dup}");
        let empty = from_json::<GroundTruth>(r#"{"request_id":"","timestamp":1}"#).unwrap_err();
        assert_eq!(empty.kind(), "invalid_data");
        assert_eq!(
            from_json::<GroundTruth>("not json").unwrap_err().kind(),
            "json"
        );
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let g = GroundTruth {
            request_id: "r".into(),
            model_id: None,
            timestamp: 0,
            label: None,
            value: Some(f64::NAN),
        };
        assert_eq!(to_json(&g).unwrap_err().kind(), "invalid_data");
    }

    #[test]
    fn maps_are_json_objects_and_enums_strings() {
        let m = ModelMetrics {
            model_id: "m".into(),
            model_version: "1".into(),
            window: "15m".into(),
            window_start: 0,
            window_end: 900_000,
            predictions: 10,
            labeled: 5,
            label_coverage: 0.5,
            metrics: vec![("mae".into(), 1.5), ("accuracy".into(), 0.9)],
            emitted_at: 900_001,
            estimated_decay_per_day: Some(0.01),
            suggested_retrain_interval_ms: None,
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&m).unwrap()).unwrap();
        assert_eq!(v["metrics"]["mae"], 1.5);
        assert_eq!(v["metrics"]["accuracy"], 0.9);
        let strict =
            from_json::<ModelMetrics>(&to_json(&m).unwrap().replacen('{', r#"{"surprise":1,"#, 1));
        assert_eq!(strict.unwrap_err().kind(), "json");
    }
}
