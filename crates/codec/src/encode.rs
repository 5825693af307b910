//! Direct Avro encoders for `Prediction` and `GroundTruth`, the two high-volume inputs.
//!
//! They write the datum of the current schema field by field, without building an
//! `apache_avro::Value`, and keep map entries in the caller's order, so the bytes are
//! deterministic and a decode gives back the same `Vec`s. [`encode_prediction_parts`] takes
//! borrowed parts so that a load generator can encode without building owned records. The
//! tests check these bytes against apache-avro decoding with the `.avsc` schema, which keeps the
//! hand-written field order honest.

use driftwatch_core::{GroundTruth, Prediction};

use crate::borrowed::{FeatureRef, GroundTruthRef, PredictionRef};
use crate::error::{CodecError, Result};
use crate::wire::{put_block_end, put_block_start, put_f64, put_long, put_str};

// Branch indexes of the unions in Prediction.avsc / GroundTruth.avsc.
const NULL: i64 = 0;
const FEATURE_DOUBLE: i64 = 1;
const FEATURE_STRING: i64 = 2;
const PRESENT: i64 = 1;

fn check_request_id(id: &str) -> Result<()> {
    if id.is_empty() {
        Err(CodecError::invalid("empty request_id"))
    } else {
        Ok(())
    }
}

fn put_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => put_long(out, NULL),
        Some(s) => {
            put_long(out, PRESENT);
            put_str(out, s);
        }
    }
}

fn put_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => put_long(out, NULL),
        Some(x) => {
            put_long(out, PRESENT);
            put_f64(out, x);
        }
    }
}

/// Appends a `Prediction` datum built from borrowed parts; `head.has_scores` is ignored in
/// favour of `scores` being `Some`.
pub fn encode_prediction_parts<'p, F, S, T>(
    head: &PredictionRef<'p>,
    features: F,
    scores: Option<S>,
    tags: T,
    out: &mut Vec<u8>,
) -> Result<()>
where
    F: IntoIterator<Item = (&'p str, FeatureRef<'p>)>,
    F::IntoIter: ExactSizeIterator,
    S: IntoIterator<Item = (&'p str, f64)>,
    S::IntoIter: ExactSizeIterator,
    T: IntoIterator<Item = (&'p str, &'p str)>,
    T::IntoIter: ExactSizeIterator,
{
    check_request_id(head.request_id)?;
    put_str(out, head.request_id);
    put_str(out, head.model_id);
    put_str(out, head.model_version);
    put_long(out, head.timestamp);

    let features = features.into_iter();
    put_block_start(out, features.len());
    for (name, value) in features {
        put_str(out, name);
        match value {
            FeatureRef::Missing => put_long(out, NULL),
            FeatureRef::Number(x) => {
                put_long(out, FEATURE_DOUBLE);
                put_f64(out, x);
            }
            FeatureRef::Category(s) => {
                put_long(out, FEATURE_STRING);
                put_str(out, s);
            }
        }
    }
    put_block_end(out);

    put_opt_str(out, head.predicted_label);
    put_opt_f64(out, head.predicted_value);

    match scores {
        None => put_long(out, NULL),
        Some(scores) => {
            put_long(out, PRESENT);
            let scores = scores.into_iter();
            put_block_start(out, scores.len());
            for (class, p) in scores {
                put_str(out, class);
                put_f64(out, p);
            }
            put_block_end(out);
        }
    }

    let tags = tags.into_iter();
    put_block_start(out, tags.len());
    for (k, v) in tags {
        put_str(out, k);
        put_str(out, v);
    }
    put_block_end(out);
    Ok(())
}

/// Appends the Avro datum of `p` (current schema) to `out`.
pub fn encode_prediction(p: &Prediction, out: &mut Vec<u8>) -> Result<()> {
    let head = PredictionRef {
        request_id: &p.request_id,
        model_id: &p.model_id,
        model_version: &p.model_version,
        timestamp: p.timestamp,
        predicted_label: p.predicted_label.as_deref(),
        predicted_value: p.predicted_value,
        has_scores: p.scores.is_some(),
    };
    encode_prediction_parts(
        &head,
        p.features
            .iter()
            .map(|(k, v)| (k.as_str(), FeatureRef::from(v))),
        p.scores
            .as_ref()
            .map(|s| s.iter().map(|(k, v)| (k.as_str(), *v))),
        p.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        out,
    )
}

/// Appends a `GroundTruth` datum built from borrowed fields.
pub fn encode_ground_truth_ref(g: &GroundTruthRef<'_>, out: &mut Vec<u8>) -> Result<()> {
    check_request_id(g.request_id)?;
    put_str(out, g.request_id);
    put_opt_str(out, g.model_id);
    put_long(out, g.timestamp);
    put_opt_str(out, g.label);
    put_opt_f64(out, g.value);
    Ok(())
}

/// Appends the Avro datum of `g` (current schema) to `out`.
pub fn encode_ground_truth(g: &GroundTruth, out: &mut Vec<u8>) -> Result<()> {
    encode_ground_truth_ref(
        &GroundTruthRef {
            request_id: &g.request_id,
            model_id: g.model_id.as_deref(),
            timestamp: g.timestamp,
            label: g.label.as_deref(),
            value: g.value,
        },
        out,
    )
}
