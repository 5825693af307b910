//! The monitor stage: partials in, drift events, retrain events and metrics snapshots out. It
//! runs on the stage runtime ([`crate::runtime`]), which owns the loop, the commits and the
//! rebalances; this module is the monitor's state and hooks.
//!
//! Partials are keyed by model id, so one member of the monitor group owns every partial of a
//! model and so all of its decisions. The [`Monitor`](driftwatch_core::monitor::Monitor)
//! (pure, in the core crate) merges them into windows and decides; this module moves bytes and
//! time:
//! - partials wait in an [`EpochQueue`](driftwatch_core::monitor::EpochQueue) until every join
//!   task's announced watermark (the progress records, [`crate::join_progress`]) passed their
//!   epoch; each epoch is then applied and judged at its end
//!   ([`Monitor::apply_epoch`](driftwatch_core::monitor::Monitor::apply_epoch)), so verdicts
//!   follow event time, not the speed at which the partials came ([`epochs`]);
//! - every `commit_interval` (processing time) it publishes what the epochs produced and
//!   commits the partials' offsets, never past a partial still waiting ([`output`]);
//! - metrics snapshots go out every `metrics_interval`; a model version whose scores fail the
//!   calibration check in them is warned about once in the log ([`calibration`]);
//! - a partial's signature (feature and output sketches) is handed to the monitor with it; one
//!   that does not decode is skipped and counted in [`MonitorStats::bad_signatures`], the
//!   partial's counters still merge.
//!
//! Exactly-once (the default): a transactional producer; each evaluation's drift events, retrain
//! events and snapshots go out in one transaction with the offsets of the partials consumed so
//! far (`send_offsets_to_transaction`), so an output is published once and its input never
//! merged again by a successor. The monitor commits in its loop (its batches are small). A
//! failed transaction is aborted, its records kept to be sent again in the next one, and the
//! consumer rewound to the committed offsets: the partials read again are dropped by the
//! monitor's duplicate check (source partition, sequence), so none is merged twice.
//! At-least-once (by configuration): outputs are awaited, then offsets committed.
//!
//! State (exactly-once): every transaction also carries what changed in each model's state since
//! the last one ([`driftwatch_core::monitor::snapshot`]: a head with baselines, detectors, drift
//! state machines and retrain policy, and one record per changed window bucket, signature
//! bucket and reference) to the compacted monitor changelog, in the partition of the model's
//! partials ([`models`]). These records, the outputs and the partials' offsets commit
//! together, so a changelog partition always holds the state exactly as of its input
//! partition's committed offset. Rebalances reach the stage through the runtime's hand-off:
//! - revoked partitions: the open work is committed first (aborted when the assignment was
//!   lost), then their models are forgotten with any output still not committed (the next
//!   owner derives it again from the same partials and state, with the same ids);
//! - assigned partitions: their models are restored from the changelog (read to its end, see
//!   [`crate::changelog`]) before the consumer is given the partitions, so before their first
//!   partial.
//!
//! At-least-once keeps no changelog: a model that moves starts over on its new owner from the
//! partials after the committed offsets. Retrain cooldowns hold across owners in both modes
//! (replayed from `retrain-events` at start-up, [`history`]).

mod calibration;
mod epochs;
mod history;
mod models;
mod output;
mod stage;
mod standby;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use driftwatch_codec::registration::value_subject;
use driftwatch_codec::RecordKind;
use driftwatch_core::monitor::{DetectorState, Monitor};
use driftwatch_core::{DriftEvent, ModelMetrics, ModelReference, RetrainEvent};
use rdkafka::consumer::{Consumer, StreamConsumer};

use crate::changelog::{ensure_changelog, ChangelogReader};
use crate::clients::{member_config, producer_config, transactional_producer_config};
use crate::error::{Result, WorkerError};
use crate::runtime::{Commits, Eos, Guarantee, Schedule, Shell, StageContext};
use crate::schema_registry::RegistryClient;
use crate::settings::{OutputFormat, Settings};
use output::OutputSchemaIds;
use stage::Monitoring;

/// What the monitor stage published so far, readable while it runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonitorStats {
    pub partials: u64,
    pub bad_partials: u64,
    /// Partials whose signature could not be decoded (their counters still merged).
    pub bad_signatures: u64,
    pub drift_events: Vec<DriftEvent>,
    pub retrain_events: Vec<RetrainEvent>,
    /// The latest snapshot per (model, version, window).
    pub latest_metrics: Vec<ModelMetrics>,
    /// Event-time progress: the latest bucket end seen.
    pub progress_ms: i64,
    /// Accuracy per (model, version, window) over the latest snapshots, oldest first:
    /// (window end, accuracy), at most [`HISTORY_POINTS`] each (the console's chart).
    pub accuracy_history: BTreeMap<(String, String, String), Vec<(i64, f64)>>,
    /// Every detector machine of the models this worker owns, by model, with its state and
    /// latest verdict, as of the last metrics snapshot or drift event (the console's drift
    /// table).
    pub detector_states: BTreeMap<String, Vec<DetectorState>>,
    /// Partitions of the partials topic this worker owns (its models are theirs).
    pub assigned_partitions: Vec<i32>,
    /// Reference profiles loaded from the model-references topic, as `model/version`.
    pub references: Vec<String>,
    /// Models whose retrain policy was restored from the retrain-events topic at start-up.
    pub restored_policies: Vec<String>,
    /// Transactions committed and aborted (exactly-once).
    pub transactions_committed: u64,
    pub transactions_aborted: u64,
    /// Changelog restores (exactly-once): how many, records and bytes read, models restored,
    /// seconds spent.
    pub restores: u64,
    pub restore_records: u64,
    pub restore_bytes: u64,
    pub restored_models: u64,
    pub restore_seconds: f64,
}

/// Points kept per accuracy history: four hours of one-minute snapshots.
pub const HISTORY_POINTS: usize = 240;

/// A handle on a running monitor stage.
#[derive(Clone)]
pub struct MonitorStageHandle {
    stats: Arc<Mutex<MonitorStats>>,
}

impl MonitorStageHandle {
    /// A snapshot of what the stage published.
    pub fn stats(&self) -> MonitorStats {
        lock(&self.stats).clone()
    }
}

/// The stage's stats are updated in place as it goes (a lock per partial or evaluation, and
/// partials are few).
fn lock(m: &Mutex<MonitorStats>) -> MutexGuard<'_, MonitorStats> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A monitor stage, built but not yet consuming.
pub struct MonitorStage {
    shell: Shell,
    monitoring: Monitoring,
}

impl MonitorStage {
    /// Builds the clients and the monitor from the settings.
    pub fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        let monitor = Monitor::new(settings.monitor.detection.clone())
            .map_err(|e| WorkerError::Config(format!("monitor: {e}")))?;
        let protocol = crate::group_protocol::resolve(&settings.kafka);
        crate::group_protocol::set_group_timeouts(
            &settings.kafka,
            &settings.monitor.group_id,
            protocol,
        );
        let consumer: StreamConsumer<StageContext> =
            member_config(&settings.kafka, &settings.monitor.group_id, protocol)
                .create_with_context(StageContext::default())?;
        let eos = settings.kafka.exactly_once();
        let changelog = if eos {
            Some(ChangelogReader::for_monitor(&settings)?)
        } else {
            None
        };
        let (producer_config, guarantee) = if eos {
            let config = transactional_producer_config(&settings.kafka, &settings.monitor.group_id);
            let eos = Eos::new(
                config.clone(),
                settings.kafka.transaction_timeout,
                Commits::Inline,
            );
            (config, Guarantee::ExactlyOnce(eos))
        } else {
            (producer_config(&settings.kafka), Guarantee::AtLeastOnce)
        };
        // Restores read partitions this stage now owns: a transaction left open in one by a
        // dead owner is fenced, not waited for.
        let changelog = changelog
            .map(|r| r.fencing(producer_config.clone()))
            .transpose()?;
        let m = &settings.monitor;
        let schedule = Schedule {
            name: "monitor",
            topics: vec![settings.topics.model_partials.clone()],
            tick: m.commit_interval,
            commit_every: m.commit_interval,
        };
        let shell = Shell::new(consumer, &producer_config, guarantee, schedule)?;
        // Input and outputs must exist: one clear error at start-up instead of delivery errors.
        let t = &settings.topics;
        for topic in [
            &t.model_partials,
            &t.drift_events,
            &t.retrain_events,
            &t.model_metrics,
        ] {
            crate::topics::partition_count(
                shell.consumer().client(),
                &settings.kafka.bootstrap_servers,
                topic,
                Duration::from_secs(10),
            )?;
        }
        let stats = Arc::new(Mutex::new(MonitorStats::default()));
        Ok(MonitorStage {
            shell,
            monitoring: Monitoring::new(settings, monitor, changelog, stats),
        })
    }

    /// A handle to read what the stage published.
    pub fn handle(&self) -> MonitorStageHandle {
        MonitorStageHandle {
            stats: self.monitoring.stats.clone(),
        }
    }

    /// Consumes partials until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let settings = &self.monitoring.settings;
        if self.monitoring.exactly_once {
            let partitions = crate::topics::partition_count(
                self.shell.consumer().client(),
                &settings.kafka.bootstrap_servers,
                &settings.topics.model_partials,
                Duration::from_secs(10),
            )?;
            ensure_changelog(
                settings,
                settings.monitor_changelog_topic(),
                partitions,
                "topics.monitor_changelog",
            )
            .await?;
            if settings.monitor.standby_replicas > 0 {
                let count = i32::try_from(partitions).unwrap_or(i32::MAX);
                self.monitoring.standby = Some(standby::MonitorStandby::start(settings, count)?);
            }
        }
        let mut shutdown = std::pin::pin!(shutdown);
        if settings.monitor.output_format == OutputFormat::AvroRegistry {
            tokio::select! {
                ids = register_output_schemas(settings) => {
                    self.monitoring.output_ids = Some(ids?);
                }
                () = &mut shutdown => return Ok(()),
            }
        }
        let settings = &self.monitoring.settings;
        let (tx, references) = tokio::sync::mpsc::unbounded_channel::<ModelReference>();
        let follower = history::follow_references(settings, tx);
        self.monitoring.references = Some(references);
        let result = self.shell.run(self.monitoring, shutdown).await;
        if let Some(f) = follower {
            f.abort();
        }
        result
    }
}

/// Registers the output topics' schemas under `<topic>-value` (`output_format =
/// "avro_registry"`), waiting while the registry does not answer: nothing is written before
/// every id is known. A refusal (incompatible with the subject's earlier versions, bad
/// credentials) stops the stage with the registry's reason.
async fn register_output_schemas(settings: &Settings) -> Result<OutputSchemaIds> {
    let client = RegistryClient::new(&settings.schema_registry)
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    let t = &settings.topics;
    let mut ids = [0u32; 3];
    for (slot, (topic, kind)) in ids.iter_mut().zip([
        (&t.drift_events, RecordKind::DriftEvent),
        (&t.retrain_events, RecordKind::RetrainEvent),
        (&t.model_metrics, RecordKind::ModelMetrics),
    ]) {
        let subject = value_subject(topic);
        *slot = client
            .register_until_done(
                &subject,
                kind.schema_text(),
                settings.schema_registry.max_backoff,
            )
            .await
            .map_err(|e| {
                WorkerError::Config(format!("monitor.output_format = \"avro_registry\": {e}"))
            })?;
        tracing::info!(subject, id = *slot, "output schema registered");
    }
    let [drift_events, retrain_events, model_metrics] = ids;
    Ok(OutputSchemaIds {
        drift_events,
        retrain_events,
        model_metrics,
    })
}
