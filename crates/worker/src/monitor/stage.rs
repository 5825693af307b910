//! The monitor stage's state and its hooks: what the runtime's loop ([`crate::runtime`])
//! calls.
//!
//! | hook | the monitor |
//! |---|---|
//! | `started` | the retrain history replayed into the policies |
//! | `on_record` | a progress record moves its partition's clock, a partial waits for its epoch; ready epochs are applied ([`super::epochs`]) |
//! | `on_tick` | ready epochs applied; a metrics snapshot every `metrics_interval` |
//! | `take_batch` | the epochs' output and (exactly-once) the state changes, encoded, with the partials' offsets ([`super::output`]) |
//! | `committed` | counted |
//! | `aborted` | exactly-once: the batch's records are kept for the next one (the consumer is rewound; partials read again are duplicates) |
//! | `assigned` | the partitions' models restored from the changelog ([`super::models`]) |
//! | `revoked` | the partitions' models forgotten |
//!
//! Reference profiles arrive on a channel from their own reader ([`super::history`]); they are
//! taken in before each record and on each tick.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch_core::monitor::{Monitor, MonitorOutput};
use driftwatch_core::ModelReference;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, TopicPartitionList};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::error;

use super::calibration::CalibrationWarnings;
use super::epochs::PartitionClock;
use super::output::{MonitorBatch, OutputRecord, OutputSchemaIds};
use super::standby::MonitorStandby;
use super::{lock, MonitorStats};
use crate::changelog::ChangelogReader;
use crate::error::Result;
use crate::runtime::{InputPartition, Stage};
use crate::settings::Settings;

/// The monitor stage's state, owned by its loop.
pub(crate) struct Monitoring {
    pub(super) settings: Settings,
    /// The changelog reader (exactly-once only).
    pub(super) changelog: Option<ChangelogReader>,
    pub(super) monitor: Monitor,
    pub(super) stats: Arc<Mutex<MonitorStats>>,
    pub(super) exactly_once: bool,
    /// Next offset per partials partition, as far as read.
    pub(super) positions: BTreeMap<i32, i64>,
    /// Per partials partition, its event time and the partials waiting for it (see
    /// [`PartitionClock`]).
    pub(super) clocks: BTreeMap<i32, PartitionClock>,
    /// Output of epochs applied since the last batch.
    pub(super) pending: MonitorOutput,
    /// Partition each model's partials come from (to forget models whose partition left).
    pub(super) model_partition: BTreeMap<String, i32>,
    pub(super) assigned: BTreeSet<i32>,
    /// Encoded output not in a committed batch yet.
    pub(super) unpublished: Vec<OutputRecord>,
    /// Reference profiles from their reader, when the topic exists.
    pub(super) references: Option<UnboundedReceiver<ModelReference>>,
    /// Model versions already warned about miscalibrated scores.
    pub(super) calibration: CalibrationWarnings,
    /// The output topics' registered schema ids (`output_format = "avro_registry"`).
    pub(super) output_ids: Option<OutputSchemaIds>,
    /// Standby replicas of other partitions' models (`monitor.standby_replicas`).
    pub(super) standby: Option<MonitorStandby>,
    last_metrics: Instant,
}

impl Monitoring {
    pub(super) fn new(
        settings: Settings,
        monitor: Monitor,
        changelog: Option<ChangelogReader>,
        stats: Arc<Mutex<MonitorStats>>,
    ) -> Self {
        Monitoring {
            exactly_once: settings.kafka.exactly_once(),
            settings,
            changelog,
            monitor,
            stats,
            positions: BTreeMap::new(),
            clocks: BTreeMap::new(),
            pending: MonitorOutput::default(),
            model_partition: BTreeMap::new(),
            assigned: BTreeSet::new(),
            unpublished: Vec::new(),
            references: None,
            calibration: CalibrationWarnings::default(),
            output_ids: None,
            standby: None,
            last_metrics: Instant::now(),
        }
    }
}

impl Stage for Monitoring {
    type Batch = MonitorBatch;

    fn started(&mut self) -> Result<()> {
        self.replay_retrain_history()
    }

    fn on_record(&mut self, msg: &BorrowedMessage<'_>, _now_ms: i64) -> Option<InputPartition> {
        self.take_references();
        self.positions.insert(msg.partition(), msg.offset() + 1);
        self.read(msg);
        self.apply_ready_epochs();
        None
    }

    fn on_tick(&mut self, _now_ms: i64, _paused: &HashSet<InputPartition>) -> Vec<InputPartition> {
        self.take_references();
        self.apply_ready_epochs();
        let judged = self
            .clocks
            .values()
            .map(PartitionClock::judged_through)
            .max();
        if let Some(now) = judged.filter(|&t| t > i64::MIN) {
            if self.last_metrics.elapsed() >= self.settings.monitor.metrics_interval {
                self.last_metrics = Instant::now();
                self.pending.metrics = self.monitor.all_metrics(now);
            }
        }
        Vec::new()
    }

    fn take_batch(&mut self) -> MonitorBatch {
        self.apply_ready_epochs();
        let out = std::mem::take(&mut self.pending);
        self.record_output(&out);
        if self.exactly_once {
            self.record_state_changes();
        }
        MonitorBatch {
            records: std::mem::take(&mut self.unpublished),
            offsets: self.offsets_to_commit(),
        }
    }

    fn committed(&mut self, _records: Vec<OutputRecord>, _took: Duration) {
        if self.exactly_once {
            lock(&self.stats).transactions_committed += 1;
        }
    }

    fn aborted(&mut self, records: Option<Vec<OutputRecord>>) {
        if !self.exactly_once {
            error!("some monitor output was not delivered; offsets not committed");
            return;
        }
        lock(&self.stats).transactions_aborted += 1;
        // Sent again, first, with the next transaction.
        if let Some(mut records) = records {
            records.append(&mut self.unpublished);
            self.unpublished = records;
        }
    }

    fn assigned(&mut self, tpl: &TopicPartitionList) -> Result<()> {
        // Eager protocol: the whole assignment, after a revoke of the whole previous one;
        // incremental: the added partitions. Either way, what is not held yet is restored.
        let mut new: Vec<i32> = tpl
            .elements()
            .iter()
            .map(|e| e.partition())
            .filter(|p| !self.assigned.contains(p))
            .collect();
        new.sort_unstable();
        new.dedup();
        if !new.is_empty() {
            self.restore(&new)?;
            self.assigned.extend(new);
        }
        self.assignment_changed();
        Ok(())
    }

    fn offsets_pending(&mut self, tpl: &TopicPartitionList) {
        if let Some(reader) = &self.changelog {
            reader.fence_last_writers(&crate::runtime::partition_numbers(tpl));
        }
    }

    fn revoked(&mut self, tpl: &TopicPartitionList, _lost: bool) {
        let gone: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        self.forget(&gone);
        self.assignment_changed();
    }
}

impl Monitoring {
    /// Tells the statistics and the standby thread what the stage holds now.
    fn assignment_changed(&mut self) {
        lock(&self.stats).assigned_partitions = self.assigned.iter().copied().collect();
        if let Some(s) = &self.standby {
            s.owned(self.assigned.clone());
        }
    }
}
