//! What the monitor stage writes: drift events, retrain events and metrics snapshots (keyed by
//! model id, in the configured format) and, exactly-once, its changelog records; and the batch
//! a commit carries them in.
//!
//! Output waits, encoded, in the stage until its batch is taken. A batch whose transaction
//! aborts comes back whole ([`crate::runtime::Stage::aborted`]) and goes out with the next
//! one: the monitor's state already merged the partials behind it, and the partials read
//! again after the rewind are dropped as duplicates, so that output would never be derived
//! again.

use driftwatch_codec::{encode_framed, to_avro, to_json, AvroRecord, JsonRecord};
use driftwatch_core::monitor::MonitorOutput;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::TopicPartitionList;
use tracing::{error, info};

use super::stage::Monitoring;
use super::{lock, HISTORY_POINTS};
use crate::runtime::Batch;
use crate::settings::OutputFormat;

/// One encoded output record.
#[derive(Clone)]
pub(crate) struct OutputRecord {
    pub(super) topic: String,
    pub(super) key: Vec<u8>,
    /// The model the record is about.
    pub(super) model: String,
    /// `None`: a tombstone (changelog records only).
    pub(super) payload: Option<Vec<u8>>,
    /// Set for changelog records: the partition of the model's partials.
    pub(super) partition: Option<i32>,
}

/// The registry's ids of the output topics' schemas (`output_format = "avro_registry"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputSchemaIds {
    pub(crate) drift_events: u32,
    pub(crate) retrain_events: u32,
    pub(crate) model_metrics: u32,
}

/// The output of the epochs judged since the last commit, the state changes (exactly-once)
/// and the partials' offsets.
pub(crate) struct MonitorBatch {
    pub(super) records: Vec<OutputRecord>,
    pub(super) offsets: TopicPartitionList,
}

impl Batch for MonitorBatch {
    /// The records, kept for the next batch if this one does not commit.
    type Outcome = Vec<OutputRecord>;

    fn offsets(&self) -> &TopicPartitionList {
        &self.offsets
    }

    fn produce<F>(&mut self, mut send: F) -> Result<(), KafkaError>
    where
        F: FnMut(FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError>,
    {
        for r in &self.records {
            let mut record = FutureRecord::to(&r.topic).key(r.key.as_slice());
            if let Some(payload) = &r.payload {
                record = record.payload(payload.as_slice());
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            send(record)?;
        }
        Ok(())
    }

    fn into_outcome(self) -> Vec<OutputRecord> {
        self.records
    }
}

impl Monitoring {
    /// Logs one evaluation's output and keeps it, encoded, for the next batch.
    pub(super) fn record_output(&mut self, out: &MonitorOutput) {
        let t = &self.settings.topics;
        let format = self.settings.monitor.output_format;
        let ids = self.output_ids;
        for e in &out.drift_events {
            info!(
                model = %e.model_id, version = %e.model_version, detector = %e.detector,
                feature = e.feature.as_deref().unwrap_or("-"), from = e.previous_state.as_str(),
                to = e.state.as_str(), value = e.value, threshold = e.threshold, id = %e.event_id,
                "drift event"
            );
            self.unpublished.extend(encode(
                &t.drift_events,
                &e.model_id,
                e,
                format,
                ids.map(|i| i.drift_events),
            ));
        }
        for e in &out.retrain_events {
            info!(model = %e.model_id, version = %e.model_version, id = %e.event_id, reasons = ?e.reasons, dry_run = e.dry_run, "retrain event");
            self.unpublished.extend(encode(
                &t.retrain_events,
                &e.model_id,
                e,
                format,
                ids.map(|i| i.retrain_events),
            ));
        }
        for m in &out.metrics {
            self.unpublished.extend(encode(
                &t.model_metrics,
                &m.model_id,
                m,
                format,
                ids.map(|i| i.model_metrics),
            ));
        }
        self.calibration.warn(&out.metrics);
        let mut s = lock(&self.stats);
        s.drift_events.extend(out.drift_events.iter().cloned());
        s.retrain_events.extend(out.retrain_events.iter().cloned());
        if !out.metrics.is_empty() {
            s.latest_metrics = out.metrics.clone();
        }
        for m in &out.metrics {
            let Some((_, accuracy)) = m.metrics.iter().find(|(n, _)| n == "accuracy") else {
                continue;
            };
            let key = (
                m.model_id.clone(),
                m.model_version.clone(),
                m.window.clone(),
            );
            let points = s.accuracy_history.entry(key).or_default();
            match points.last_mut() {
                // A snapshot of the same window end (metrics are emitted on processing time)
                // replaces the previous one: labels may have matured since.
                Some(last) if last.0 == m.window_end => last.1 = *accuracy,
                Some(last) if last.0 > m.window_end => {}
                _ => points.push((m.window_end, *accuracy)),
            }
            if points.len() > HISTORY_POINTS {
                let excess = points.len() - HISTORY_POINTS;
                points.drain(..excess);
            }
        }
        // Refreshed with each metrics snapshot (every `metrics_interval`) or state change, not
        // at every commit: a copy of every detector of every owned model.
        if !out.metrics.is_empty() || !out.drift_events.is_empty() {
            s.detector_states = self
                .model_partition
                .keys()
                .map(|model| (model.clone(), self.monitor.detector_states(model)))
                .collect();
        }
    }
}

/// Encodes one output record in the configured format; `schema_id` is the topic's registered
/// schema (set when the format is `avro_registry`).
fn encode<T: AvroRecord + JsonRecord>(
    topic: &str,
    key: &str,
    record: &T,
    format: OutputFormat,
    schema_id: Option<u32>,
) -> Option<OutputRecord> {
    let payload = match (format, schema_id) {
        (OutputFormat::Avro, _) => to_avro(record),
        (OutputFormat::Json, _) => to_json(record).map(String::into_bytes),
        (OutputFormat::AvroRegistry, Some(id)) => {
            to_avro(record).map(|datum| encode_framed(id, &datum))
        }
        (OutputFormat::AvroRegistry, None) => {
            // The stage registers the schemas before it reads anything.
            error!(topic, "output schema not registered; record not written");
            return None;
        }
    };
    match payload {
        Ok(payload) => Some(OutputRecord {
            topic: topic.to_string(),
            key: key.as_bytes().to_vec(),
            model: key.to_string(),
            payload: Some(payload),
            partition: None,
        }),
        Err(e) => {
            error!(error = %e, topic, "record not encodable");
            None
        }
    }
}
