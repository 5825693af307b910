//! Avro datums of every record, behind one trait: [`AvroRecord`].
//!
//! Encoding writes the current schema's binary form directly, for every record: the bytes are
//! deterministic and `Vec<(String, _)>` maps keep their order (apache-avro's `Value::Map` is a
//! `HashMap`, which would shuffle both). Decoding a datum of the current schema reads it back
//! the same way, so `decode(encode(x)) == x`.
//!
//! Datums from another writer schema (an older or newer release) go through
//! [`from_avro_resolving`]: `Prediction` and `GroundTruth` use the resolving fast decoders; the
//! low-volume records driftwatch produces itself are resolved by apache-avro into the current
//! schema and then read as above. Maps decoded that way come out in an unspecified order.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use driftwatch_core::{
    ClassScores, ConfusionCell, DriftEvent, DriftState, GroundTruth, JoinCounters, ModelMetrics,
    ModelPartial, ModelReference, Prediction, RegressionSums, RetrainEvent,
};

use crate::borrowed::{self, GroundTruthDecoder, PredictionDecoder};
use crate::encode::{encode_ground_truth, encode_prediction};
use crate::error::{CodecError, Result};
use crate::schema::RecordKind;
use crate::wire::{
    put_block_end, put_block_start, put_bool, put_f64, put_int, put_long, put_str, put_u64,
    read_u64, Cursor,
};

/// A record with an Avro datum form.
pub trait AvroRecord: Sized {
    const KIND: RecordKind;

    /// Appends the datum (current schema) to `out`.
    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()>;

    /// Decodes a datum written with the current schema.
    fn decode_avro(datum: &[u8]) -> Result<Self>;

    /// Decodes a datum written with `writer`, resolved against the current schema.
    fn decode_avro_resolving(writer: &Schema, datum: &[u8]) -> Result<Self> {
        let current = Self::KIND.schema()?;
        let bytes = resolve_into(writer, current, datum)?;
        Self::decode_avro(&bytes)
    }
}

/// The datum of `record` under the current schema.
pub fn to_avro<T: AvroRecord>(record: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    record.encode_avro(&mut out)?;
    Ok(out)
}

/// Decodes a datum written with the current schema.
pub fn from_avro<T: AvroRecord>(datum: &[u8]) -> Result<T> {
    T::decode_avro(datum)
}

/// Decodes a datum written with `writer`, resolved against the current schema.
pub fn from_avro_resolving<T: AvroRecord>(writer: &Schema, datum: &[u8]) -> Result<T> {
    T::decode_avro_resolving(writer, datum)
}

/// Resolves a datum of `writer` into a datum of `reader` with apache-avro.
fn resolve_into(writer: &Schema, reader: &Schema, datum: &[u8]) -> Result<Vec<u8>> {
    let mut input = datum;
    let value = GenericDatumReader::builder(writer)
        .reader_schema(reader)
        .build()?
        .read_value(&mut input)?;
    if !input.is_empty() {
        return Err(CodecError::invalid(format!(
            "{} trailing byte(s) after the record",
            input.len()
        )));
    }
    Ok(GenericDatumWriter::builder(reader)
        .build()?
        .write_value_to_vec(value)?)
}

impl AvroRecord for Prediction {
    const KIND: RecordKind = RecordKind::Prediction;
    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        encode_prediction(self, out)
    }
    fn decode_avro(datum: &[u8]) -> Result<Self> {
        borrowed::decode_prediction(datum)
    }
    fn decode_avro_resolving(writer: &Schema, datum: &[u8]) -> Result<Self> {
        PredictionDecoder::new(writer, Self::KIND.schema()?)?.decode_owned(datum)
    }
}

impl AvroRecord for GroundTruth {
    const KIND: RecordKind = RecordKind::GroundTruth;
    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        encode_ground_truth(self, out)
    }
    fn decode_avro(datum: &[u8]) -> Result<Self> {
        borrowed::decode_ground_truth(datum)
    }
    fn decode_avro_resolving(writer: &Schema, datum: &[u8]) -> Result<Self> {
        GroundTruthDecoder::new(writer, Self::KIND.schema()?)?.decode_owned(datum)
    }
}

// ---- small helpers for the hand-written records ------------------------------------------

fn put_state(out: &mut Vec<u8>, s: DriftState) {
    // Symbol order of the DriftState enum in DriftEvent.avsc.
    let index = match s {
        DriftState::Ok => 0,
        DriftState::Warning => 1,
        DriftState::Drift => 2,
        DriftState::Recovered => 3,
    };
    put_int(out, index);
}

fn read_state(cur: &mut Cursor<'_>) -> Result<DriftState> {
    Ok(match cur.read_int()? {
        0 => DriftState::Ok,
        1 => DriftState::Warning,
        2 => DriftState::Drift,
        3 => DriftState::Recovered,
        other => return Err(CodecError::invalid(format!("DriftState index {other}"))),
    })
}

fn put_str_array(out: &mut Vec<u8>, items: &[String]) {
    put_block_start(out, items.len());
    for s in items {
        put_str(out, s);
    }
    put_block_end(out);
}

fn read_str_array(cur: &mut Cursor<'_>) -> Result<Vec<String>> {
    let mut items = Vec::new();
    loop {
        let n = cur.read_block_count(1)?;
        if n == 0 {
            return Ok(items);
        }
        for _ in 0..n {
            items.push(cur.read_str()?.to_owned());
        }
    }
}

fn put_f64_map(out: &mut Vec<u8>, entries: &[(String, f64)]) {
    put_block_start(out, entries.len());
    for (k, v) in entries {
        put_str(out, k);
        put_f64(out, *v);
    }
    put_block_end(out);
}

fn read_f64_map(cur: &mut Cursor<'_>) -> Result<Vec<(String, f64)>> {
    let mut entries = Vec::new();
    loop {
        // A key length byte plus an 8-byte double.
        let n = cur.read_block_count(9)?;
        if n == 0 {
            return Ok(entries);
        }
        for _ in 0..n {
            let k = cur.read_str()?.to_owned();
            entries.push((k, cur.read_f64()?));
        }
    }
}

fn put_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        None => put_long(out, 0),
        Some(s) => {
            put_long(out, 1);
            put_str(out, s);
        }
    }
}

fn read_opt_str(cur: &mut Cursor<'_>) -> Result<Option<String>> {
    match cur.read_long()? {
        0 => Ok(None),
        1 => Ok(Some(cur.read_str()?.to_owned())),
        i => Err(CodecError::invalid(format!("union branch index {i}"))),
    }
}

/// `["null", "bytes"]`.
fn put_opt_bytes(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_long(out, 0),
        Some(b) => {
            put_long(out, 1);
            // A slice never exceeds isize::MAX bytes, so the length fits a long.
            put_long(out, i64::try_from(b.len()).unwrap_or(i64::MAX));
            out.extend_from_slice(b);
        }
    }
}

fn read_opt_bytes(cur: &mut Cursor<'_>) -> Result<Option<Vec<u8>>> {
    match cur.read_long()? {
        0 => Ok(None),
        1 => Ok(Some(cur.read_bytes()?.to_vec())),
        i => Err(CodecError::invalid(format!("union branch index {i}"))),
    }
}

/// `["null", "long"]`.
fn put_opt_long(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        None => put_long(out, 0),
        Some(x) => {
            put_long(out, 1);
            put_long(out, x);
        }
    }
}

/// `["null", "long"]` as the datum's last field: a datum of the schema before that field was
/// added ends where it would start, and reads as `None`.
fn read_trailing_opt_long(cur: &mut Cursor<'_>) -> Result<Option<i64>> {
    if cur.remaining() == 0 {
        return Ok(None);
    }
    match cur.read_long()? {
        0 => Ok(None),
        1 => Ok(Some(cur.read_long()?)),
        i => Err(CodecError::invalid(format!("union branch index {i}"))),
    }
}

/// `["null", "double"]`.
fn put_opt_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v {
        None => put_long(out, 0),
        Some(x) => {
            put_long(out, 1);
            put_f64(out, x);
        }
    }
}

/// `["null", "double"]` among the datum's last fields (see [`read_trailing_opt_long`]).
fn read_trailing_opt_f64(cur: &mut Cursor<'_>) -> Result<Option<f64>> {
    if cur.remaining() == 0 {
        return Ok(None);
    }
    match cur.read_long()? {
        0 => Ok(None),
        1 => Ok(Some(cur.read_f64()?)),
        i => Err(CodecError::invalid(format!("union branch index {i}"))),
    }
}

fn string(cur: &mut Cursor<'_>) -> Result<String> {
    Ok(cur.read_str()?.to_owned())
}

/// Runs `read` over the whole datum and checks nothing is left.
fn read_all<T>(datum: &[u8], read: impl FnOnce(&mut Cursor<'_>) -> Result<T>) -> Result<T> {
    let mut cur = Cursor::new(datum);
    let value = read(&mut cur)?;
    cur.finish()?;
    Ok(value)
}

impl AvroRecord for DriftEvent {
    const KIND: RecordKind = RecordKind::DriftEvent;

    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        put_str(out, &self.event_id);
        put_str(out, &self.model_id);
        put_str(out, &self.model_version);
        put_str(out, &self.detector);
        put_opt_str(out, self.feature.as_deref());
        put_state(out, self.previous_state);
        put_state(out, self.state);
        put_str(out, &self.statistic);
        put_f64(out, self.value);
        put_f64(out, self.threshold);
        put_long(out, self.baseline_start);
        put_long(out, self.baseline_end);
        put_long(out, self.window_start);
        put_long(out, self.window_end);
        put_u64(out, self.baseline_samples, "baseline_samples")?;
        put_u64(out, self.window_samples, "window_samples")?;
        put_f64(out, self.severity);
        put_long(out, self.detected_at);
        Ok(())
    }

    fn decode_avro(datum: &[u8]) -> Result<Self> {
        read_all(datum, |c| {
            Ok(DriftEvent {
                event_id: string(c)?,
                model_id: string(c)?,
                model_version: string(c)?,
                detector: string(c)?,
                feature: read_opt_str(c)?,
                previous_state: read_state(c)?,
                state: read_state(c)?,
                statistic: string(c)?,
                value: c.read_f64()?,
                threshold: c.read_f64()?,
                baseline_start: c.read_long()?,
                baseline_end: c.read_long()?,
                window_start: c.read_long()?,
                window_end: c.read_long()?,
                baseline_samples: read_u64(c, "baseline_samples")?,
                window_samples: read_u64(c, "window_samples")?,
                severity: c.read_f64()?,
                detected_at: c.read_long()?,
            })
        })
    }
}

impl AvroRecord for RetrainEvent {
    const KIND: RecordKind = RecordKind::RetrainEvent;

    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        put_str(out, &self.event_id);
        put_str(out, &self.model_id);
        put_str(out, &self.model_version);
        put_str_array(out, &self.reasons);
        put_str_array(out, &self.drift_event_ids);
        put_f64_map(out, &self.metrics);
        put_long(out, self.train_from);
        put_long(out, self.train_to);
        put_bool(out, self.dry_run);
        put_long(out, self.created_at);
        put_opt_f64(out, self.estimated_decay_per_day);
        put_opt_long(out, self.suggested_retrain_interval_ms);
        Ok(())
    }

    fn decode_avro(datum: &[u8]) -> Result<Self> {
        read_all(datum, |c| {
            Ok(RetrainEvent {
                event_id: string(c)?,
                model_id: string(c)?,
                model_version: string(c)?,
                reasons: read_str_array(c)?,
                drift_event_ids: read_str_array(c)?,
                metrics: read_f64_map(c)?,
                train_from: c.read_long()?,
                train_to: c.read_long()?,
                dry_run: c.read_bool()?,
                created_at: c.read_long()?,
                estimated_decay_per_day: read_trailing_opt_f64(c)?,
                suggested_retrain_interval_ms: read_trailing_opt_long(c)?,
            })
        })
    }
}

impl AvroRecord for ModelMetrics {
    const KIND: RecordKind = RecordKind::ModelMetrics;

    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        put_str(out, &self.model_id);
        put_str(out, &self.model_version);
        put_str(out, &self.window);
        put_long(out, self.window_start);
        put_long(out, self.window_end);
        put_u64(out, self.predictions, "predictions")?;
        put_u64(out, self.labeled, "labeled")?;
        put_f64(out, self.label_coverage);
        put_f64_map(out, &self.metrics);
        put_long(out, self.emitted_at);
        put_opt_f64(out, self.estimated_decay_per_day);
        put_opt_long(out, self.suggested_retrain_interval_ms);
        Ok(())
    }

    fn decode_avro(datum: &[u8]) -> Result<Self> {
        read_all(datum, |c| {
            Ok(ModelMetrics {
                model_id: string(c)?,
                model_version: string(c)?,
                window: string(c)?,
                window_start: c.read_long()?,
                window_end: c.read_long()?,
                predictions: read_u64(c, "predictions")?,
                labeled: read_u64(c, "labeled")?,
                label_coverage: c.read_f64()?,
                metrics: read_f64_map(c)?,
                emitted_at: c.read_long()?,
                estimated_decay_per_day: read_trailing_opt_f64(c)?,
                suggested_retrain_interval_ms: read_trailing_opt_long(c)?,
            })
        })
    }
}

impl AvroRecord for ModelPartial {
    const KIND: RecordKind = RecordKind::ModelPartial;

    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        put_str(out, &self.model_id);
        put_str(out, &self.model_version);
        put_long(out, self.bucket_start);
        put_long(out, self.bucket_width_ms);
        put_int(out, self.source_partition);
        put_u64(out, self.sequence, "sequence")?;
        let c = &self.counters;
        for (name, v) in [
            ("predictions", c.predictions),
            ("labels", c.labels),
            ("matched", c.matched),
            ("expired_unlabeled", c.expired_unlabeled),
            ("orphan_labels", c.orphan_labels),
            ("duplicate_predictions", c.duplicate_predictions),
            ("duplicate_labels", c.duplicate_labels),
            ("late_labels", c.late_labels),
            ("dead_lettered", c.dead_lettered),
            ("received_predictions", c.received_predictions),
        ] {
            put_u64(out, v, name)?;
        }
        put_block_start(out, self.confusion.len());
        for cell in &self.confusion {
            put_str(out, &cell.predicted);
            put_str(out, &cell.actual);
            put_u64(out, cell.count, "confusion.count")?;
        }
        put_block_end(out);
        let r = &self.regression;
        put_u64(out, r.count, "regression.count")?;
        put_f64(out, r.abs_error_sum);
        put_f64(out, r.squared_error_sum);
        put_f64(out, r.error_sum);
        put_f64(out, r.abs_pct_error_sum);
        put_u64(out, r.pct_count, "regression.pct_count")?;
        put_f64(out, self.log_loss_sum);
        put_f64(out, self.brier_sum);
        put_u64(out, self.scored, "scored")?;
        put_long(out, self.label_delay_sum_ms);
        put_opt_bytes(out, self.signature.as_deref());
        put_opt_long(out, self.epoch_start);
        put_u64(out, self.received_scored, "received_scored")?;
        put_f64(out, self.received_score_sum);
        put_f64(out, self.scored_score_sum);
        put_u64(out, self.scored_correct, "scored_correct")?;
        put_block_start(out, self.class_scores.len());
        for c in &self.class_scores {
            put_str(out, &c.class);
            put_u64(out, c.received_scored, "class_scores.received_scored")?;
            put_f64(out, c.received_score_sum);
            put_u64(out, c.scored, "class_scores.scored")?;
            put_f64(out, c.scored_score_sum);
        }
        put_block_end(out);
        // Misrouted counts of the join's counters, written last: they came after the
        // per-class sums with defaults of 0, and readers before them stop at the end of those.
        put_u64(
            out,
            self.counters.misrouted_predictions,
            "misrouted_predictions",
        )?;
        put_u64(out, self.counters.misrouted_labels, "misrouted_labels")?;
        Ok(())
    }

    fn decode_avro(datum: &[u8]) -> Result<Self> {
        read_all(datum, |c| {
            let model_id = string(c)?;
            let model_version = string(c)?;
            let bucket_start = c.read_long()?;
            let bucket_width_ms = c.read_long()?;
            let source_partition = c.read_int()?;
            let sequence = read_u64(c, "sequence")?;
            let counters = JoinCounters {
                predictions: read_u64(c, "predictions")?,
                labels: read_u64(c, "labels")?,
                matched: read_u64(c, "matched")?,
                expired_unlabeled: read_u64(c, "expired_unlabeled")?,
                orphan_labels: read_u64(c, "orphan_labels")?,
                duplicate_predictions: read_u64(c, "duplicate_predictions")?,
                duplicate_labels: read_u64(c, "duplicate_labels")?,
                late_labels: read_u64(c, "late_labels")?,
                dead_lettered: read_u64(c, "dead_lettered")?,
                received_predictions: read_u64(c, "received_predictions")?,
                // Written last (see below).
                ..JoinCounters::default()
            };
            let mut confusion = Vec::new();
            loop {
                // Two string lengths and a count: at least three bytes per cell.
                let n = c.read_block_count(3)?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    confusion.push(ConfusionCell {
                        predicted: string(c)?,
                        actual: string(c)?,
                        count: read_u64(c, "confusion.count")?,
                    });
                }
            }
            let regression = RegressionSums {
                count: read_u64(c, "regression.count")?,
                abs_error_sum: c.read_f64()?,
                squared_error_sum: c.read_f64()?,
                error_sum: c.read_f64()?,
                abs_pct_error_sum: c.read_f64()?,
                pct_count: read_u64(c, "regression.pct_count")?,
            };
            let log_loss_sum = c.read_f64()?;
            let brier_sum = c.read_f64()?;
            let scored = read_u64(c, "scored")?;
            let label_delay_sum_ms = c.read_long()?;
            let signature = read_opt_bytes(c)?;
            let epoch_start = read_trailing_opt_long(c)?;
            // The score sums came after v1 with defaults of 0: a datum that ends before them
            // was written without them.
            let (received_scored, received_score_sum, scored_score_sum, scored_correct) =
                if c.remaining() == 0 {
                    (0, 0.0, 0.0, 0)
                } else {
                    (
                        read_u64(c, "received_scored")?,
                        c.read_f64()?,
                        c.read_f64()?,
                        read_u64(c, "scored_correct")?,
                    )
                };
            // The per-class sums came after the score sums, with a default of [].
            let mut class_scores = Vec::new();
            while c.remaining() > 0 {
                // A class length, two counts and two doubles: at least 19 bytes per entry.
                let n = c.read_block_count(19)?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    class_scores.push(ClassScores {
                        class: string(c)?,
                        received_scored: read_u64(c, "class_scores.received_scored")?,
                        received_score_sum: c.read_f64()?,
                        scored: read_u64(c, "class_scores.scored")?,
                        scored_score_sum: c.read_f64()?,
                    });
                }
            }
            // The misrouted counts came after the per-class sums, with defaults of 0.
            let mut counters = counters;
            if c.remaining() > 0 {
                counters.misrouted_predictions = read_u64(c, "misrouted_predictions")?;
                counters.misrouted_labels = read_u64(c, "misrouted_labels")?;
            }
            Ok(ModelPartial {
                model_id,
                model_version,
                bucket_start,
                bucket_width_ms,
                source_partition,
                sequence,
                counters,
                confusion,
                regression,
                log_loss_sum,
                brier_sum,
                scored,
                label_delay_sum_ms,
                signature,
                epoch_start,
                received_scored,
                received_score_sum,
                scored_score_sum,
                scored_correct,
                class_scores,
            })
        })
    }
}

impl AvroRecord for ModelReference {
    const KIND: RecordKind = RecordKind::ModelReference;

    fn encode_avro(&self, out: &mut Vec<u8>) -> Result<()> {
        put_str(out, &self.model_id);
        put_str(out, &self.model_version);
        put_long(out, self.created_at);
        put_u64(out, self.rows, "rows")?;
        put_str(out, &self.source);
        put_long(out, i64::try_from(self.signature.len()).unwrap_or(i64::MAX));
        out.extend_from_slice(&self.signature);
        Ok(())
    }

    fn decode_avro(datum: &[u8]) -> Result<Self> {
        read_all(datum, |c| {
            Ok(ModelReference {
                model_id: string(c)?,
                model_version: string(c)?,
                created_at: c.read_long()?,
                rows: read_u64(c, "rows")?,
                source: string(c)?,
                signature: c.read_bytes()?.to_vec(),
            })
        })
    }
}
