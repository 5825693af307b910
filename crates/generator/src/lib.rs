//! # driftwatch-generator
//!
//! Realistic, deterministic synthetic traffic for driftwatch: predictions of any number of
//! models and their ground truth, with label delays, lost labels, duplicates and garbage, and
//! scripted scenarios (concept drift, covariate shift, a new category, a missing feature, a new
//! model version).
//!
//! The generator is pure: it yields encoded records in event-time order (a label is yielded at
//! its label time, after its prediction), and the caller decides where they go (Kafka, files)
//! and how fast. The same configuration and seed give the same bytes. [`publish`] sends them to
//! the input topics, as fast as the producer goes or paced by event time.
//!
//! How a model behaves: each request draws numeric features from N(μ, 1) and categorical ones
//! from a skewed distribution over `categories` values. The true class is a deterministic
//! function of the features; the model predicts it correctly with probability `accuracy`
//! (otherwise another class), and reports a score for each class. A regressor's truth is a
//! linear function of the numeric features plus noise, and its prediction adds `noise` more.

mod config;
mod model;
pub mod publish;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use driftwatch_codec::{encode_ground_truth, encode_prediction};
use driftwatch_core::{GroundTruth, Prediction};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

pub use config::{
    GeneratorConfig, GeneratorError, LabelDelay, ModelKind, ModelSpec, Scenario, ScenarioEvent,
};
use model::ModelState;

/// Which input topic a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Predictions,
    Labels,
}

/// What a generated record is, for the caller's own accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A first prediction or label.
    Original,
    /// A re-send of a record already generated.
    Duplicate,
    /// Bytes that are no valid record.
    Garbage,
}

/// One record to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedRecord {
    pub side: Side,
    /// The request id (the Kafka key).
    pub key: String,
    /// Avro datum of the current schema (or garbage bytes).
    pub payload: Vec<u8>,
    pub event_time: i64,
    pub kind: RecordKind,
    /// The model the record belongs to (`None` for garbage).
    pub model_id: Option<String>,
}

/// What the generator produced so far, per model id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeneratedCounts {
    pub predictions: u64,
    pub labels: u64,
    pub lost_labels: u64,
    pub duplicate_predictions: u64,
    pub duplicate_labels: u64,
    /// Correct predictions among the original ones (the model's true accuracy).
    pub correct: u64,
}

/// The generator: an iterator over records in event-time order.
pub struct TrafficGenerator {
    config: GeneratorConfig,
    rng: SmallRng,
    models: Vec<ModelState>,
    next_prediction: u64,
    total_predictions: u64,
    /// Labels (and duplicates) waiting for their event time: (time, sequence) → record.
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    pending_records: BTreeMap<u64, GeneratedRecord>,
    sequence: u64,
    counts: BTreeMap<String, GeneratedCounts>,
    garbage: u64,
    delay: LogNormal<f64>,
}

impl TrafficGenerator {
    /// Validates the configuration and builds the generator.
    pub fn new(config: GeneratorConfig) -> Result<Self, GeneratorError> {
        config.validate()?;
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let models = config
            .models
            .iter()
            .map(|m| ModelState::new(m, &mut rng))
            .collect();
        let delay = LogNormal::new(
            (config.label_delay.median_ms.max(1) as f64).ln(),
            config.label_delay.sigma,
        )
        .map_err(|e| GeneratorError::Invalid(format!("label_delay: {e}")))?;
        let total_predictions =
            (config.duration_ms as f64 / 1000.0 * config.predictions_per_second).round() as u64;
        Ok(TrafficGenerator {
            config,
            rng,
            models,
            next_prediction: 0,
            total_predictions,
            pending: BinaryHeap::new(),
            pending_records: BTreeMap::new(),
            sequence: 0,
            counts: BTreeMap::new(),
            garbage: 0,
            delay,
        })
    }

    /// Number of original predictions this generator will produce in all.
    pub fn total_predictions(&self) -> u64 {
        self.total_predictions
    }

    /// Counts per model id of what was generated so far.
    pub fn counts(&self) -> &BTreeMap<String, GeneratedCounts> {
        &self.counts
    }

    /// Garbage records generated so far.
    pub fn garbage(&self) -> u64 {
        self.garbage
    }

    /// Event time of prediction number `i`.
    fn prediction_time(&self, i: u64) -> i64 {
        self.config.start_ms + (i as f64 * 1000.0 / self.config.predictions_per_second) as i64
    }

    fn schedule(&mut self, record: GeneratedRecord) {
        let seq = self.sequence;
        self.sequence += 1;
        self.pending.push(Reverse((record.event_time, seq)));
        self.pending_records.insert(seq, record);
    }

    fn pop_pending(&mut self) -> Option<GeneratedRecord> {
        let Reverse((_, seq)) = self.pending.pop()?;
        self.pending_records.remove(&seq)
    }

    fn garbage_record(&mut self, side: Side, time: i64) -> GeneratedRecord {
        self.garbage += 1;
        let len = self.rng.gen_range(1..48);
        // Never 0x00 first (that would read as schema-registry framing) nor '{' (JSON).
        let payload: Vec<u8> = (0..len)
            .map(|i| {
                let b: u8 = self.rng.gen();
                if i == 0 && (b == 0 || b == b'{') {
                    0xff
                } else {
                    b
                }
            })
            .collect();
        GeneratedRecord {
            side,
            key: format!("garbage-{}-{}", self.config.seed, self.garbage),
            payload,
            event_time: time,
            kind: RecordKind::Garbage,
            model_id: None,
        }
    }

    /// Generates prediction number `i` and schedules its label, duplicates and garbage.
    fn make_prediction(&mut self, i: u64) -> GeneratedRecord {
        let time = self.prediction_time(i);
        let offset = time - self.config.start_ms;
        let model_index = (i % self.models.len() as u64) as usize;
        let events = self
            .config
            .events_for(&self.models[model_index].spec.id, offset);
        let request_id = format!(
            "{}-{}-{i}",
            self.models[model_index].spec.id, self.config.seed
        );
        let drawn = self.models[model_index].draw(&mut self.rng, &events);
        let model = &self.models[model_index];
        let prediction = Prediction {
            request_id: request_id.clone(),
            model_id: model.spec.id.clone(),
            model_version: drawn.version.clone(),
            timestamp: time,
            features: drawn.features,
            predicted_label: drawn.predicted_label,
            predicted_value: drawn.predicted_value,
            scores: drawn.scores,
            tags: vec![("generator".into(), "driftwatch".into())],
        };
        let mut payload = Vec::with_capacity(512);
        // A prediction built here always encodes: ids are non-empty by construction.
        if encode_prediction(&prediction, &mut payload).is_err() {
            payload.clear();
        }
        let model_id = model.spec.id.clone();
        let counts = self.counts.entry(model_id.clone()).or_default();
        counts.predictions += 1;
        if drawn.correct {
            counts.correct += 1;
        }

        // The label, unless lost (or slower than the longest delay, which is the same thing).
        let delay = self.delay.sample(&mut self.rng).min(1e15) as i64;
        if self.rng.gen_bool(self.config.label_loss) || delay > self.config.label_delay.max_ms {
            counts.lost_labels += 1;
        } else {
            counts.labels += 1;
            let label = GroundTruth {
                request_id: request_id.clone(),
                model_id: Some(model_id.clone()),
                timestamp: time + delay,
                label: drawn.true_label,
                value: drawn.true_value,
            };
            let mut lp = Vec::with_capacity(64);
            if encode_ground_truth(&label, &mut lp).is_err() {
                lp.clear();
            }
            let record = GeneratedRecord {
                side: Side::Labels,
                key: request_id.clone(),
                payload: lp,
                event_time: time + delay,
                kind: RecordKind::Original,
                model_id: Some(model_id.clone()),
            };
            if self.rng.gen_bool(self.config.duplicate_rate) {
                counts.duplicate_labels += 1;
                let mut dup = record.clone();
                dup.kind = RecordKind::Duplicate;
                dup.event_time += self.rng.gen_range(0..1_000);
                self.schedule(dup);
            }
            self.schedule(record);
        }
        let record = GeneratedRecord {
            side: Side::Predictions,
            key: request_id,
            payload,
            event_time: time,
            kind: RecordKind::Original,
            model_id: Some(model_id),
        };
        if self.rng.gen_bool(self.config.duplicate_rate) {
            if let Some(c) = self
                .counts
                .get_mut(record.model_id.as_deref().unwrap_or(""))
            {
                c.duplicate_predictions += 1;
            }
            let mut dup = record.clone();
            dup.kind = RecordKind::Duplicate;
            dup.event_time += self.rng.gen_range(0..1_000);
            self.schedule(dup);
        }
        for side in [Side::Predictions, Side::Labels] {
            if self.rng.gen_bool(self.config.garbage_rate) {
                let g = self.garbage_record(side, time);
                self.schedule(g);
            }
        }
        record
    }
}

impl Iterator for TrafficGenerator {
    type Item = GeneratedRecord;

    fn next(&mut self) -> Option<GeneratedRecord> {
        let next_pending = self.pending.peek().map(|Reverse((t, _))| *t);
        if self.next_prediction < self.total_predictions {
            let t = self.prediction_time(self.next_prediction);
            if next_pending.is_none_or(|p| t <= p) {
                let i = self.next_prediction;
                self.next_prediction += 1;
                return Some(self.make_prediction(i));
            }
        }
        self.pop_pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftwatch_codec::{decode_ground_truth, decode_prediction};

    fn config() -> GeneratorConfig {
        let mut c = GeneratorConfig::two_models(42);
        c.duration_ms = 600_000;
        c.predictions_per_second = 20.0;
        c
    }

    #[test]
    fn same_seed_same_traffic() {
        let a: Vec<_> = TrafficGenerator::new(config()).expect("valid").collect();
        let b: Vec<_> = TrafficGenerator::new(config()).expect("valid").collect();
        assert_eq!(a, b);
        let mut other = config();
        other.seed = 43;
        let c: Vec<_> = TrafficGenerator::new(other).expect("valid").collect();
        assert_ne!(a, c);
    }

    #[test]
    fn records_come_in_event_time_order_and_decode() {
        let g = TrafficGenerator::new(config()).expect("valid");
        let records: Vec<_> = g.collect();
        assert!(records
            .windows(2)
            .all(|w| w[0].event_time <= w[1].event_time));
        for r in records.iter().filter(|r| r.kind != RecordKind::Garbage) {
            match r.side {
                Side::Predictions => {
                    let p = decode_prediction(&r.payload).expect("prediction decodes");
                    assert_eq!(p.request_id, r.key);
                    assert_eq!(p.features.len(), 20);
                }
                Side::Labels => {
                    let l = decode_ground_truth(&r.payload).expect("label decodes");
                    assert_eq!(l.request_id, r.key);
                }
            }
        }
        for r in records.iter().filter(|r| r.kind == RecordKind::Garbage) {
            assert!(
                decode_prediction(&r.payload).is_err() || decode_ground_truth(&r.payload).is_err()
            );
        }
    }

    #[test]
    fn counts_match_what_was_yielded() {
        let mut g = TrafficGenerator::new(config()).expect("valid");
        let records: Vec<_> = g.by_ref().collect();
        let total = g.total_predictions();
        let counts = g.counts().clone();
        let predictions = records
            .iter()
            .filter(|r| r.side == Side::Predictions && r.kind == RecordKind::Original)
            .count() as u64;
        assert_eq!(predictions, total);
        assert_eq!(counts.values().map(|c| c.predictions).sum::<u64>(), total);
        let labels = records
            .iter()
            .filter(|r| r.side == Side::Labels && r.kind == RecordKind::Original)
            .count() as u64;
        assert_eq!(counts.values().map(|c| c.labels).sum::<u64>(), labels);
        let dups = records
            .iter()
            .filter(|r| r.kind == RecordKind::Duplicate)
            .count() as u64;
        assert_eq!(
            counts
                .values()
                .map(|c| c.duplicate_labels + c.duplicate_predictions)
                .sum::<u64>(),
            dups
        );
        let garbage = records
            .iter()
            .filter(|r| r.kind == RecordKind::Garbage)
            .count() as u64;
        assert_eq!(garbage, g.garbage());
    }

    #[test]
    fn concept_drift_lowers_accuracy_after_its_time() {
        let mut c = config();
        c.duration_ms = 3_600_000;
        c.scenario = Scenario::Drift;
        let c = c.resolved();
        let drift_at = c
            .events
            .iter()
            .find_map(|e| match e {
                ScenarioEvent::ConceptDrift { at_ms, .. } => Some(*at_ms),
                _ => None,
            })
            .expect("drift scenario has a concept drift");
        let start = c.start_ms;
        let records: Vec<_> = TrafficGenerator::new(c).expect("valid").collect();
        // Accuracy of the drifting model before and after, from the payloads themselves.
        let mut truth = std::collections::HashMap::new();
        for r in records
            .iter()
            .filter(|r| r.side == Side::Labels && r.kind == RecordKind::Original)
        {
            let l = decode_ground_truth(&r.payload).expect("label");
            truth.insert(l.request_id, l.label);
        }
        let (mut before, mut after) = ((0u32, 0u32), (0u32, 0u32));
        for r in records.iter().filter(|r| {
            r.side == Side::Predictions
                && r.kind == RecordKind::Original
                && r.model_id.as_deref() == Some("fraud")
        }) {
            let p = decode_prediction(&r.payload).expect("prediction");
            let Some(actual) = truth.get(&p.request_id) else {
                continue;
            };
            let ok = u32::from(&p.predicted_label == actual);
            let slot = if p.timestamp - start < drift_at {
                &mut before
            } else {
                &mut after
            };
            slot.0 += ok;
            slot.1 += 1;
        }
        let acc = |(ok, n): (u32, u32)| f64::from(ok) / f64::from(n.max(1));
        assert!(acc(before) > 0.88, "before {}", acc(before));
        assert!(acc(after) < 0.76, "after {}", acc(after));
    }
}
