//! The join stage: one consumer group over `predictions` and `ground-truth`, one
//! [`JoinTask`](driftwatch_core::join::JoinTask) per partition pair, partials out to the
//! monitor stage, bad input to the dead-letter topic. It runs on the stage runtime
//! ([`crate::runtime`]), which owns the loop, the commits and the rebalances; this module is
//! the join's state and hooks.
//!
//! Design:
//! - The consumer subscribes to both inputs with the `range` assignor, so partition *i* of both
//!   topics goes to the same member (checked at start: equal partition counts).
//! - Each message is decoded by the hand-written codec (no per-feature allocation), checked by
//!   the core's intake rules, turned into a compact
//!   [`PredictionIn`](driftwatch_core::join::PredictionIn)/[`LabelIn`](driftwatch_core::join::LabelIn)
//!   and pushed into its partition's task ([`intake`]); the task merges both inputs in
//!   timestamp order and emits join events, which fold into per-(model, version, bucket)
//!   partials ([`partition`]).
//! - While a prediction is decoded, its features are interned (per task, hinted by position
//!   since producers keep feature order stable) and staged in a buffer reused across messages
//!   ([`visitor`]); once the decoder returns the model and prediction time, they go into the
//!   signature of that (model, version, bucket), with the predicted label, value and score.
//!   Each flush attaches every bucket's serialized signature to its partial.
//! - Every `flush_interval` the runtime takes a batch ([`batch`]: dead letters, partials and
//!   progress records, changelog deltas, input offsets) and commits it: nothing is committed
//!   before what it produced is in Kafka.
//! - Exactly-once (the default, Kafka Streams' `exactly_once_v2`): one transactional producer
//!   per worker; each batch is one transaction, committed on a thread of its own while the
//!   loop keeps processing. The offset committed for an input is that of its oldest record
//!   still waiting in the task's merge queue: queued records are not in the state, so they are
//!   read again after a crash. A failed transaction is aborted and the tasks are rebuilt from
//!   the changelog at the committed offsets: nothing of the aborted work remains.
//! - Rebalance (exactly-once): on revocation the open work is committed (aborted when the
//!   assignment was lost) and the tasks dropped; on assignment each partition's task is
//!   restored from its changelog partition before the consumer is given the partition, so no
//!   record of a partition is processed before its state is back. The range assignor is
//!   eager: every rebalance revokes and restores every partition of the member.
//! - At-least-once (by configuration): partials and dead letters are awaited, then offsets
//!   committed; on revocation the same, and the tasks' pending state is dropped (counted in
//!   `dropped_on_revoke`).
//! - "Caught up" per input partition comes from librdkafka's statistics (last stable offset vs.
//!   our position); it lets a task go on without waiting for an input that has nothing to give
//!   ([`stats`]).
//!
//! - A framed record whose writer schema id is new is held (its input partition paused at its
//!   offset) while the id is fetched from the schema registry; an id the registry does not
//!   have is dead-lettered ([`schemas`]).
//!
//! - Every record read is checked against its key's murmur2 partition ([`routing`]): a producer
//!   on another partitioner is counted, logged and shown, not silently lost. With
//!   `join.misrouted = "repartition"` a misrouted record is re-published on its right
//!   partition to the repartition topic, a third input of every task, and joined from there
//!   ([`repartition`]).
//!
//! - With `join.state.dir`, each task keeps at most its share of `join.state.memory_budget`
//!   of buffer entries in memory and the rest on local disk ([`state`]).
//!
//! Files: [`stage`] (the state and its hooks), [`intake`], [`visitor`], [`dead_letter`],
//! [`partition`], [`batch`], [`routing`], [`repartition`], [`schemas`], [`state`], [`stats`].

mod batch;
mod dead_letter;
#[cfg(feature = "fault-points")]
mod fault_tier;
mod intake;
mod partition;
mod repartition;
mod routing;
mod schemas;
mod stage;
mod standby;
pub(crate) mod standby_choice;
mod state;
mod stats;
mod visitor;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use driftwatch_codec::framing::{GroundTruthDecoders, PredictionDecoders, WriterSchemas};
use rdkafka::consumer::{Consumer, StreamConsumer};
use tracing::info;

pub(crate) use dead_letter::dead_letter_headers;
pub use routing::TopicRouting;
pub use standby::StandbyCounters;
pub use stats::{JoinStats, TIMED_EVERY};

use crate::changelog::{ensure_changelog, ChangelogReader};
use crate::client_memory::ClientMemory;
use crate::clients::{
    member_config, metadata_client, producer_config, transactional_producer_config,
};
use crate::error::{Result, WorkerError};
use crate::runtime::{Commits, Eos, Guarantee, Schedule, Shell, StageContext};
use crate::settings::Settings;
use crate::topics::{check_copartitioned, partition_count};
use stage::{Decoders, Join};

/// A handle on a running join stage: read its accounting while it runs.
#[derive(Clone)]
pub struct JoinStageHandle {
    shared: Arc<stats::Shared>,
}

impl JoinStageHandle {
    /// A snapshot of the stage's counters, as the stage's loop last published them (at most
    /// [`crate::runtime::PUBLISH_EVERY`] old while it runs, and final once it stopped); the
    /// records read (`events_in`) are counted live.
    pub fn stats(&self) -> JoinStats {
        self.shared.stats()
    }
}

/// Runs the join stage until `shutdown` resolves.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<()> {
    let stage = JoinStage::new(settings)?;
    stage.run(shutdown).await
}

/// A join stage, built and checked but not yet consuming.
pub struct JoinStage {
    settings: Settings,
    shell: Shell,
    join: Join,
    partitions: usize,
}

impl JoinStage {
    /// Builds the clients and checks the topics (inputs exist and are co-partitioned).
    pub fn new(settings: Settings) -> Result<Self> {
        settings.validate()?;
        // Before any broker is asked: a state folder that cannot be used is a clear error now
        // rather than a store failure at the first spill.
        settings.join.state.check_dir()?;
        let eos = settings.kafka.exactly_once();
        // The inputs' partition counts size librdkafka's pre-fetch (see `client_memory`), so
        // they are looked up before the stage's own clients exist.
        let t = &settings.topics;
        let repartition = settings.join.misrouted.repartitions();
        let bootstrap = &settings.kafka.bootstrap_servers;
        let timeout = Duration::from_secs(10);
        let metadata = metadata_client(&settings.kafka)?;
        let partitions = check_copartitioned(
            metadata.client(),
            bootstrap,
            &t.predictions,
            &t.ground_truth,
            timeout,
        )?;
        info!(partitions, predictions = %t.predictions, ground_truth = %t.ground_truth, "inputs co-partitioned");
        if repartition {
            check_copartitioned(
                metadata.client(),
                bootstrap,
                &t.predictions,
                &t.repartition,
                timeout,
            )?;
            info!(repartition = %t.repartition, "misrouted records are repartitioned through it");
        }
        let inputs = if repartition { 3 } else { 2 };
        let memory = ClientMemory::for_worker(
            settings.join.state.memory_budget().as_u64(),
            inputs * partitions,
            &settings.kafka,
        );
        info!(
            queued_min_messages = memory.queued_min_messages,
            queued_max_messages_kbytes = memory.queued_max_messages_kbytes,
            fetch_max_bytes = memory.fetch_max_bytes,
            max_partition_fetch_bytes = memory.max_partition_fetch_bytes,
            queue_buffering_max_kbytes = memory.queue_buffering_max_kbytes,
            "client buffers sized from join.state.memory_budget"
        );
        let (producer_config, guarantee) = if eos {
            let mut config =
                transactional_producer_config(&settings.kafka, &settings.kafka.join_group_id);
            memory.apply_to_producer(&mut config, &settings.kafka);
            let commits = Commits::Background {
                flush_interval: settings.join.flush_interval,
            };
            let eos = Eos::new(config.clone(), settings.kafka.transaction_timeout, commits);
            (config, Guarantee::ExactlyOnce(eos))
        } else {
            (producer_config(&settings.kafka), Guarantee::AtLeastOnce)
        };
        let changelog = if eos {
            // Restores read partitions this stage now owns: a transaction left open in one
            // by a dead owner is fenced, not waited for.
            Some(ChangelogReader::new(&settings)?.fencing(producer_config.clone())?)
        } else {
            None
        };
        // Writer schemas of framed payloads come from the schema registry as their ids are
        // met (`[schema_registry]`); without one, a framed payload is dead-lettered.
        let writers = WriterSchemas::new();
        let max_bytes = settings.join.max_message_bytes;
        let decoders = Decoders {
            predictions: PredictionDecoders::for_writers(&writers)
                .map_err(|e| WorkerError::Config(format!("prediction schema: {e}")))?
                .with_max_message_bytes(max_bytes),
            labels: GroundTruthDecoders::for_writers(&writers)
                .map_err(|e| WorkerError::Config(format!("ground-truth schema: {e}")))?
                .with_max_message_bytes(max_bytes),
        };
        let protocol = crate::group_protocol::resolve(&settings.kafka);
        crate::group_protocol::set_group_timeouts(
            &settings.kafka,
            &settings.kafka.join_group_id,
            protocol,
        );
        let mut consumer_config =
            member_config(&settings.kafka, &settings.kafka.join_group_id, protocol);
        memory.apply_to_consumer(&mut consumer_config, &settings.kafka);
        let consumer: StreamConsumer<StageContext> = consumer_config
            .set("statistics.interval.ms", "500")
            .create_with_context(StageContext::default())?;
        let flush = settings.join.flush_interval;
        let mut topics = vec![t.predictions.clone(), t.ground_truth.clone()];
        if repartition {
            // Its index in the subscription is the repartition source's (see `partition`).
            topics.push(t.repartition.clone());
        }
        let schedule = Schedule {
            name: "join",
            topics,
            tick: flush.min(Duration::from_millis(100)),
            commit_every: flush,
        };
        let shell = Shell::new(consumer, &producer_config, guarantee, schedule)?;
        let client = shell.consumer().client();
        // The outputs must exist too: a missing one would otherwise surface as delivery errors
        // long after start-up.
        let partials_partitions = partition_count(client, bootstrap, &t.model_partials, timeout)?;
        partition_count(client, bootstrap, &t.dead_letter, timeout)?;
        let join = Join::new(
            &settings,
            decoders,
            changelog,
            partitions,
            partials_partitions,
        )?;
        Ok(JoinStage {
            settings,
            shell,
            join,
            partitions,
        })
    }

    /// A handle to read the stage's accounting.
    pub fn handle(&self) -> JoinStageHandle {
        JoinStageHandle {
            shared: self.join.shared.clone(),
        }
    }

    /// Consumes until `shutdown` resolves, then commits and leaves the group.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        if self.settings.kafka.exactly_once() {
            ensure_changelog(
                &self.settings,
                self.settings.join_changelog_topic(),
                self.partitions,
                "topics.join_changelog",
            )
            .await?;
        }
        self.shell.run(self.join, shutdown).await
    }
}
