//! The monitor stage's event time: per partials partition, the join's announced watermarks
//! and the partials waiting for their epoch (see `driftwatch_core::monitor::clock`).

use std::collections::BTreeMap;

use driftwatch_codec::from_avro;
use driftwatch_core::monitor::{EpochQueue, JoinClock, MonitorOutput, Placement};
use driftwatch_core::ModelPartial;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::lock;
use super::stage::Monitoring;
use crate::join_progress::{is_progress, JoinProgress};

/// The event time of one partials partition and the partials waiting for it. Join tasks write
/// their progress records to every partition after their partials, so a partition's clock
/// never passes a partial still unread on that partition (a clock shared by partitions read
/// at different speeds would).
pub(super) struct PartitionClock {
    clock: JoinClock,
    /// Partials read but not applied yet, by offset: offsets committed stay at or before the
    /// oldest of them, so a successor reads them again.
    waiting: EpochQueue<i64>,
    /// The clock's time when this partition's models were last advanced to it.
    advanced: i64,
}

impl Default for PartitionClock {
    fn default() -> Self {
        PartitionClock {
            clock: JoinClock::new(),
            waiting: EpochQueue::new(),
            advanced: i64::MIN,
        }
    }
}

impl PartitionClock {
    /// End of the last epoch judged on this partition (`i64::MIN` before the first).
    pub(super) fn judged_through(&self) -> i64 {
        self.waiting.handed_out()
    }
}

impl Monitoring {
    /// Takes one record of the partials topic: a join progress record moves the clock, a
    /// partial waits for its epoch.
    pub(super) fn read(&mut self, msg: &rdkafka::message::BorrowedMessage<'_>) {
        if is_progress(msg.headers()) {
            match msg.payload().map(JoinProgress::decode) {
                Some(Ok(p)) => {
                    let clock = &mut self.clocks.entry(msg.partition()).or_default().clock;
                    for (source, watermark) in p.watermarks {
                        clock.observe(p.tasks, source, watermark);
                    }
                }
                _ => {
                    lock(&self.stats).bad_partials += 1;
                    warn!(
                        offset = msg.offset(),
                        "undecodable join progress record skipped"
                    );
                }
            }
            return;
        }
        match msg.payload().map(from_avro::<ModelPartial>) {
            Some(Ok(p)) => {
                self.model_partition
                    .insert(p.model_id.clone(), msg.partition());
                self.clocks
                    .entry(msg.partition())
                    .or_default()
                    .waiting
                    .push(msg.offset(), p);
            }
            Some(Err(e)) => {
                lock(&self.stats).bad_partials += 1;
                warn!(error = %e, offset = msg.offset(), "undecodable partial skipped");
            }
            None => lock(&self.stats).bad_partials += 1,
        }
    }

    /// Applies, per partition, every epoch its clock has passed, oldest first, each judged at
    /// its end (see `driftwatch_core::monitor::clock`); the output waits for the next
    /// transaction or publication.
    pub(super) fn apply_ready_epochs(&mut self) {
        let partitions: Vec<i32> = self.clocks.keys().copied().collect();
        for partition in partitions {
            self.apply_ready_epochs_of(partition);
        }
        let time = self
            .assigned
            .iter()
            .map(|p| self.clocks.get(p).and_then(|c| c.clock.time()))
            .min()
            .flatten();
        if let Some(t) = time {
            lock(&self.stats).progress_ms = t;
        }
    }

    fn apply_ready_epochs_of(&mut self, partition: i32) {
        loop {
            let Some(c) = self.clocks.get_mut(&partition) else {
                return;
            };
            let time = c.clock.time().unwrap_or(i64::MIN);
            let Some(epoch) = c.waiting.pop_ready(time) else {
                // Every epoch before `time` is applied: the partition's models mature to it.
                if time > c.advanced {
                    c.advanced = time;
                    let models: Vec<&str> = self
                        .model_partition
                        .iter()
                        .filter(|(_, p)| **p == partition)
                        .map(|(m, _)| m.as_str())
                        .collect();
                    let out = self.monitor.advance(models, time);
                    self.pending.drift_events.extend(out.drift_events);
                    self.pending.retrain_events.extend(out.retrain_events);
                }
                return;
            };
            let (mut merged, mut bad_signatures) = (0u64, 0u64);
            let monitor = &mut self.monitor;
            let before: BTreeMap<(String, String), u64> = epoch
                .partials
                .iter()
                .map(|(_, p)| {
                    let errors = monitor
                        .signatures(&p.model_id, &p.model_version)
                        .map_or(0, |s| s.decode_errors());
                    ((p.model_id.clone(), p.model_version.clone()), errors)
                })
                .collect();
            let out = monitor.apply_epoch(
                epoch.partials.iter().map(|(_, p)| p),
                epoch.end,
                |p, placement| match placement {
                    Ok(Placement::Merged) => merged += 1,
                    Ok(_) => {}
                    Err(e) => warn!(error = %e, model = %p.model_id, "partial not merged"),
                },
            );
            for ((model, version), errors) in before {
                let now = self
                    .monitor
                    .signatures(&model, &version)
                    .map_or(0, |s| s.decode_errors());
                if now > errors {
                    warn!(model = %model, "undecodable signature skipped");
                    bad_signatures += now - errors;
                }
            }
            {
                let mut stats = lock(&self.stats);
                stats.partials += epoch.partials.len() as u64;
                stats.bad_signatures += bad_signatures;
            }
            debug!(
                end = epoch.end,
                partials = epoch.partials.len(),
                merged,
                "epoch applied"
            );
            let MonitorOutput {
                drift_events,
                retrain_events,
                metrics,
            } = out;
            self.pending.drift_events.extend(drift_events);
            self.pending.retrain_events.extend(retrain_events);
            self.pending.metrics.extend(metrics);
        }
    }

    /// Per assigned partials partition: the offset to commit, at or before the oldest partial
    /// still waiting for its epoch.
    pub(super) fn offsets_to_commit(&self) -> TopicPartitionList {
        let mut next = self.positions.clone();
        for (partition, c) in &self.clocks {
            if let (Some(n), Some(oldest)) = (next.get_mut(partition), c.waiting.tags().min()) {
                *n = (*n).min(*oldest);
            }
        }
        let topic = &self.settings.topics.model_partials;
        let mut offsets = TopicPartitionList::new();
        for (p, n) in next {
            if self.assigned.contains(&p) {
                if let Err(e) = offsets.add_partition_offset(topic, p, Offset::Offset(n)) {
                    debug!(error = %e, "offset");
                }
            }
        }
        offsets
    }
}
