//! Which models a monitor worker owns: those of its partials partitions. Exactly-once, a
//! model's state travels with its partition through the monitor changelog
//! ([`driftwatch_core::monitor::snapshot`]): written with every transaction (what changed),
//! restored when the partition is assigned, forgotten when it is revoked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use driftwatch_core::monitor::snapshot;
use rdkafka::Message;
use tracing::{error, info, warn};

use super::lock;
use super::output::OutputRecord;
use super::stage::Monitoring;
use crate::error::Result;

/// How long one changelog restore may take before the stage gives up (and restarts).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(240);

impl Monitoring {
    /// Restores the models of newly assigned partitions from the changelog: the latest record
    /// of each key (a tombstone deletes it), grouped by model. A model whose records are
    /// refused starts over from its next partials; records left stale (the model's
    /// configuration changed) are deleted in the next transaction.
    pub(super) fn restore(&mut self, partitions: &[i32]) -> Result<()> {
        let Some(reader) = &self.changelog else {
            return Ok(());
        };
        // Per partition, the latest value of each key (`None`: deleted): from the standby's
        // copy when this worker followed the partition, then the changelog after it.
        let mut latest: BTreeMap<i32, BTreeMap<Vec<u8>, Option<Vec<u8>>>> = BTreeMap::new();
        let mut handed = self
            .standby
            .as_ref()
            .map(|s| s.release(partitions))
            .unwrap_or_default();
        let from_standby = handed.len();
        let starts: Vec<(i32, Option<i64>)> = partitions
            .iter()
            .map(|&p| match handed.remove(&p) {
                Some(copy) => {
                    latest.insert(p, copy.latest);
                    (p, copy.next)
                }
                None => (p, None),
            })
            .collect();
        let totals = reader.read_partitions_from(&starts, RESTORE_TIMEOUT, |m| {
            latest.entry(m.partition()).or_default().insert(
                m.key().unwrap_or_default().to_vec(),
                m.payload().map(<[u8]>::to_vec),
            );
            Ok(())
        })?;
        let topic = reader.topic().to_owned();
        let mut models = 0u64;
        for (partition, records) in latest {
            let live = records.into_iter().filter_map(|(k, v)| Some((k, v?)));
            let (grouped, bad) = snapshot::group_records(live);
            for (key, e) in bad {
                warn!(error = %e, partition, key = %String::from_utf8_lossy(&key), "monitor state record refused");
            }
            for (model, records) in grouped {
                match self.monitor.import_model(&model, records) {
                    Ok(r) => {
                        if r.config_changed {
                            warn!(model = %model, "model configuration changed since its state was written: windows and detectors start over, the retrain policy is kept");
                        }
                        for key in r.stale_keys {
                            self.unpublished.push(OutputRecord {
                                topic: topic.clone(),
                                key,
                                model: model.clone(),
                                payload: None,
                                partition: Some(partition),
                            });
                        }
                        self.model_partition.insert(model, partition);
                        models += 1;
                    }
                    Err(e) => {
                        warn!(error = %e, partition, model = %model, "model state refused: the model starts over from the next partials");
                    }
                }
            }
        }
        info!(
            topic = %topic,
            partitions = ?partitions,
            from_standby,
            records = totals.records,
            bytes = totals.bytes,
            models,
            seconds = totals.elapsed.as_secs_f64(),
            "monitor state restored"
        );
        let mut s = lock(&self.stats);
        s.restores += 1;
        s.restore_records += totals.records;
        s.restore_bytes += totals.bytes;
        s.restored_models += models;
        s.restore_seconds += totals.elapsed.as_secs_f64();
        Ok(())
    }

    /// Encodes what changed in every model this worker owns (state records), for the next
    /// batch.
    pub(super) fn record_state_changes(&mut self) {
        let topic = self.settings.monitor_changelog_topic();
        for model in self.monitor.dirty_models() {
            let Some(&partition) = self.model_partition.get(&model) else {
                continue;
            };
            if !self.assigned.contains(&partition) {
                continue;
            }
            match self.monitor.export_model(&model) {
                Ok(records) => {
                    for r in records {
                        self.unpublished.push(OutputRecord {
                            topic: topic.clone(),
                            key: r.key,
                            model: model.clone(),
                            payload: r.value,
                            partition: Some(partition),
                        });
                    }
                }
                Err(e) => error!(error = %e, "model state not written"),
            }
        }
    }

    /// Forgets the models of partitions that left this worker, with their output not yet
    /// committed (their next owner derives it again, with the same ids).
    pub(super) fn forget(&mut self, gone: &[i32]) {
        if gone.is_empty() {
            return;
        }
        let models: BTreeSet<String> = self
            .model_partition
            .iter()
            .filter(|(_, p)| gone.contains(p))
            .map(|(m, _)| m.clone())
            .collect();
        for m in &models {
            self.monitor.hand_over(m);
            self.model_partition.remove(m);
        }
        let before = self.unpublished.len();
        self.unpublished.retain(|r| !models.contains(&r.model));
        self.clocks.retain(|p, _| !gone.contains(p));
        let pending = &mut self.pending;
        pending
            .drift_events
            .retain(|e| !models.contains(&e.model_id));
        pending
            .retrain_events
            .retain(|e| !models.contains(&e.model_id));
        pending.metrics.retain(|m| !models.contains(&m.model_id));
        {
            // The console shows the models this worker owns: the others' history goes too.
            let mut s = lock(&self.stats);
            s.accuracy_history
                .retain(|(m, _, _), _| !models.contains(m));
            s.detector_states.retain(|m, _| !models.contains(m));
            s.latest_metrics.retain(|m| !models.contains(&m.model_id));
        }
        for p in gone {
            self.positions.remove(p);
            self.assigned.remove(p);
        }
        info!(partitions = ?gone, models = models.len(), dropped_output = before - self.unpublished.len(), "partials partitions left this worker; their models are forgotten");
    }
}
