//! The hot path: decoding `Prediction` and `GroundTruth` datums without allocating.
//!
//! Decoding a prediction into the owned [`Prediction`] costs one `String` per feature name and
//! per categorical value, and those allocations dominate the cost. The join stage needs none of
//! them: it hashes or summarizes each feature and moves on. So these decoders return the
//! record's scalar fields as slices of the input ([`PredictionRef`], [`GroundTruthRef`]) and
//! report map entries (features, scores, tags) to a caller-supplied [`PredictionVisitor`], in
//! wire order, as borrowed `&str`s. Strings are validated UTF-8; every length and count is
//! checked against the remaining input before it is used.
//!
//! # Schema resolution
//! A decoder is built for one (writer schema, reader schema) pair with Avro's resolution rules,
//! once, in [`PredictionDecoder::new`]:
//! - writer fields are read in writer order and matched to reader fields by name (or by a
//!   reader field's alias);
//! - writer fields the reader does not know, or that this decoder does not report, are skipped
//!   with a generic skipper for any Avro type;
//! - reader fields the writer lacks take the reader's default;
//! - unions are resolved by the branch index on the wire, so branch order may differ, and
//!   int → long → float → double and bytes → string promotions apply.
//!
//! A writer whose fields cannot possibly be read (a string where a number is needed, a required
//! field with no default…) is rejected at build time with
//! [`CodecError::IncompatibleSchemas`]. A writer union branch that the reader cannot take is an
//! error only for messages that use it, as in Avro.
//!
//! Decoding borrows from the decoder as well as from the datum (`&'a self`), because a field
//! missing from the writer yields the reader's default, which the decoder owns.

use std::sync::LazyLock;

use apache_avro::Schema;
use driftwatch_core::join::intake::{LabelFields, PredictionFields};
use driftwatch_core::{FeatureValue, GroundTruth, Prediction, TimestampMs};

use crate::error::Result;
use crate::schema;

mod plan;

use plan::{required, Plan, GROUND_TRUTH_TARGETS, PREDICTION_TARGETS};

/// A feature value borrowed from the datum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FeatureRef<'a> {
    Missing,
    Number(f64),
    Category(&'a str),
}

impl FeatureRef<'_> {
    /// The owned form.
    pub fn to_owned_value(self) -> FeatureValue {
        match self {
            FeatureRef::Missing => FeatureValue::Missing,
            FeatureRef::Number(x) => FeatureValue::Number(x),
            FeatureRef::Category(s) => FeatureValue::Category(s.to_owned()),
        }
    }
}

impl<'a> From<&'a FeatureValue> for FeatureRef<'a> {
    fn from(v: &'a FeatureValue) -> Self {
        match v {
            FeatureValue::Missing => FeatureRef::Missing,
            FeatureValue::Number(x) => FeatureRef::Number(*x),
            FeatureValue::Category(s) => FeatureRef::Category(s),
        }
    }
}

/// A feature name handed to [`PredictionVisitor::feature_bytes`] is not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// Receives the map entries of a prediction as they are decoded, in wire order (entries taken
/// from reader defaults come last).
pub trait PredictionVisitor<'a> {
    fn feature(&mut self, name: &'a str, value: FeatureRef<'a>);

    /// A feature whose name has not been validated as UTF-8 yet; the decoder calls this one.
    ///
    /// The default validates the name and calls [`feature`](Self::feature). A visitor that
    /// only needs an id for the name may override it to skip the validation when the bytes
    /// equal a name it already holds as a `str` (equal bytes are valid UTF-8 too); any other
    /// bytes it must validate, returning `Err(NotUtf8)` when they are not UTF-8, which fails
    /// the decode with [`CodecError::InvalidUtf8`].
    #[inline]
    fn feature_bytes(
        &mut self,
        name: &'a [u8],
        value: FeatureRef<'a>,
    ) -> std::result::Result<(), NotUtf8> {
        let name = std::str::from_utf8(name).map_err(|_| NotUtf8)?;
        self.feature(name, value);
        Ok(())
    }
    fn score(&mut self, class: &'a str, p: f64) {
        let _ = (class, p);
    }
    fn tag(&mut self, key: &'a str, value: &'a str) {
        let _ = (key, value);
    }
}

/// A visitor that ignores every map entry.
#[derive(Debug, Default, Clone, Copy)]
pub struct IgnoreEntries;

impl<'a> PredictionVisitor<'a> for IgnoreEntries {
    fn feature(&mut self, _: &'a str, _: FeatureRef<'a>) {}
}

/// The scalar fields of a prediction, borrowed from the datum (or from the decoder's defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PredictionRef<'a> {
    pub request_id: &'a str,
    pub model_id: &'a str,
    pub model_version: &'a str,
    pub timestamp: TimestampMs,
    pub predicted_label: Option<&'a str>,
    pub predicted_value: Option<f64>,
    /// Whether `scores` was present (possibly empty) rather than null.
    pub has_scores: bool,
}

/// The fields of a ground-truth label, borrowed from the datum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroundTruthRef<'a> {
    pub request_id: &'a str,
    pub model_id: Option<&'a str>,
    pub timestamp: TimestampMs,
    pub label: Option<&'a str>,
    pub value: Option<f64>,
}

impl GroundTruthRef<'_> {
    pub fn to_owned_record(&self) -> GroundTruth {
        GroundTruth {
            request_id: self.request_id.to_owned(),
            model_id: self.model_id.map(str::to_owned),
            timestamp: self.timestamp,
            label: self.label.map(str::to_owned),
            value: self.value,
        }
    }
}

impl<'a> PredictionRef<'a> {
    /// The fields the join's intake rules judge, with the predicted class's `score` (which the
    /// caller takes from the class scores it was visited with).
    pub fn fields(&self, score: Option<f32>) -> PredictionFields<'a> {
        PredictionFields {
            request_id: self.request_id,
            model_id: self.model_id,
            model_version: self.model_version,
            timestamp: self.timestamp,
            predicted_label: self.predicted_label,
            predicted_value: self.predicted_value,
            score,
        }
    }
}

impl<'a> From<GroundTruthRef<'a>> for LabelFields<'a> {
    fn from(l: GroundTruthRef<'a>) -> Self {
        LabelFields {
            request_id: l.request_id,
            model_id: l.model_id,
            timestamp: l.timestamp,
            label: l.label,
            value: l.value,
        }
    }
}

/// Decodes `Prediction` datums written with one writer schema, read with one reader schema.
pub struct PredictionDecoder {
    plan: Plan,
}

impl PredictionDecoder {
    /// Builds the resolution plan; fails if the writer cannot be read with the reader.
    pub fn new(writer: &Schema, reader: &Schema) -> Result<Self> {
        Ok(PredictionDecoder {
            plan: Plan::new(writer, reader, PREDICTION_TARGETS)?,
        })
    }

    /// A decoder for datums written with the current schema.
    pub fn current() -> Result<Self> {
        let s = schema::prediction()?;
        Self::new(s, s)
    }

    /// Decodes one datum, reporting map entries to `v`.
    pub fn decode<'a, V: PredictionVisitor<'a>>(
        &'a self,
        datum: &'a [u8],
        v: &mut V,
    ) -> Result<PredictionRef<'a>> {
        let f = self.plan.run(datum, v)?;
        Ok(PredictionRef {
            request_id: required(f.request_id, "request_id")?,
            model_id: required(f.model_id, "model_id")?,
            model_version: required(f.model_version, "model_version")?,
            timestamp: required(f.timestamp, "timestamp")?,
            predicted_label: f.label,
            predicted_value: f.value,
            has_scores: f.has_scores,
        })
    }

    /// Decodes one datum into the owned record.
    pub fn decode_owned(&self, datum: &[u8]) -> Result<Prediction> {
        #[derive(Default)]
        struct Collect {
            features: Vec<(String, FeatureValue)>,
            scores: Vec<(String, f64)>,
            tags: Vec<(String, String)>,
        }
        impl<'a> PredictionVisitor<'a> for Collect {
            fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
                self.features
                    .push((name.to_owned(), value.to_owned_value()));
            }
            fn score(&mut self, class: &'a str, p: f64) {
                self.scores.push((class.to_owned(), p));
            }
            fn tag(&mut self, key: &'a str, value: &'a str) {
                self.tags.push((key.to_owned(), value.to_owned()));
            }
        }
        let mut c = Collect::default();
        let head = self.decode(datum, &mut c)?;
        Ok(Prediction {
            request_id: head.request_id.to_owned(),
            model_id: head.model_id.to_owned(),
            model_version: head.model_version.to_owned(),
            timestamp: head.timestamp,
            features: c.features,
            predicted_label: head.predicted_label.map(str::to_owned),
            predicted_value: head.predicted_value,
            scores: head.has_scores.then_some(c.scores),
            tags: c.tags,
        })
    }
}

/// Decodes `GroundTruth` datums written with one writer schema, read with one reader schema.
pub struct GroundTruthDecoder {
    plan: Plan,
}

impl GroundTruthDecoder {
    /// Builds the resolution plan; fails if the writer cannot be read with the reader.
    pub fn new(writer: &Schema, reader: &Schema) -> Result<Self> {
        Ok(GroundTruthDecoder {
            plan: Plan::new(writer, reader, GROUND_TRUTH_TARGETS)?,
        })
    }

    /// A decoder for datums written with the current schema.
    pub fn current() -> Result<Self> {
        let s = schema::ground_truth()?;
        Self::new(s, s)
    }

    pub fn decode<'a>(&'a self, datum: &'a [u8]) -> Result<GroundTruthRef<'a>> {
        let f = self.plan.run(datum, &mut IgnoreEntries)?;
        Ok(GroundTruthRef {
            request_id: required(f.request_id, "request_id")?,
            model_id: f.model_id,
            timestamp: required(f.timestamp, "timestamp")?,
            label: f.label,
            value: f.value,
        })
    }

    pub fn decode_owned(&self, datum: &[u8]) -> Result<GroundTruth> {
        Ok(self.decode(datum)?.to_owned_record())
    }
}

static CURRENT_PREDICTION: LazyLock<Result<PredictionDecoder>> =
    LazyLock::new(PredictionDecoder::current);
static CURRENT_GROUND_TRUTH: LazyLock<Result<GroundTruthDecoder>> =
    LazyLock::new(GroundTruthDecoder::current);

/// The shared decoder for the current `Prediction` schema.
pub fn current_prediction_decoder() -> Result<&'static PredictionDecoder> {
    CURRENT_PREDICTION.as_ref().map_err(Clone::clone)
}

/// The shared decoder for the current `GroundTruth` schema.
pub fn current_ground_truth_decoder() -> Result<&'static GroundTruthDecoder> {
    CURRENT_GROUND_TRUTH.as_ref().map_err(Clone::clone)
}

/// Decodes a datum written with the current schema into an owned [`Prediction`].
pub fn decode_prediction(datum: &[u8]) -> Result<Prediction> {
    current_prediction_decoder()?.decode_owned(datum)
}

/// Decodes a datum written with the current schema into an owned [`GroundTruth`].
pub fn decode_ground_truth(datum: &[u8]) -> Result<GroundTruth> {
    current_ground_truth_decoder()?.decode_owned(datum)
}
