//! The join stage's changelog topic: creating it, and reading partitions back into tasks.
//!
//! The record format is the core's ([`driftwatch_core::join::changelog`]); this module moves
//! it. Restore reads each assigned partition from its start to its end as a `read_committed`
//! consumer sees it, so records of an aborted transaction are never restored. A partition is
//! restored before its task processes any input.
//!
//! The end is the high watermark, not just the last stable offset: a previous owner killed
//! mid-transaction leaves a transaction open (until its transactional id is reused, which
//! aborts it at once, or `transaction_timeout` passes), and records another owner committed
//! after it stay invisible until then. Stopping at the last stable offset would miss them while
//! the committed input offsets already count them as done. So the reader waits, bounded, until
//! its position reaches the high watermark.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use driftwatch_core::join::changelog::ChangelogRestore;
use driftwatch_core::join::{JoinConfig, JoinTask};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::info;

use crate::clients::{consumer_config, create_topics, TopicSpec};
use crate::error::{Result, WorkerError};
use crate::settings::Settings;

/// Creates the changelog topic (compacted, `partitions` partitions) when it does not exist,
/// and checks that an existing one has as many partitions as the inputs.
pub async fn ensure_changelog(settings: &Settings, partitions: usize) -> Result<()> {
    let topic = settings.join_changelog_topic();
    create_topics(
        &settings.kafka,
        &[TopicSpec {
            name: topic.clone(),
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
            configs: changelog_configs(),
        }],
    )
    .await?;
    let probe = crate::topics::TopicChecker::new(&settings.kafka, Duration::from_secs(10))?;
    let found = probe.partitions(&topic)?;
    if found != partitions {
        return Err(WorkerError::Config(format!(
            "the join changelog `{topic}` has {found} partitions but the inputs have {partitions}: each input partition needs its own (delete the changelog to have it re-created, or set topics.join_changelog)"
        )));
    }
    Ok(())
}

/// Topic configuration of a changelog: compacted; 64 MiB segments (instead of 1 GiB) so the
/// cleaner gets closed segments to compact soon and a restore reads about one record per live
/// entry rather than the whole history; tombstones kept a day so a restore that started before
/// a delete still sees it.
pub fn changelog_configs() -> Vec<(String, String)> {
    vec![
        ("cleanup.policy".into(), "compact".into()),
        ("segment.bytes".into(), "67108864".into()),
        ("min.cleanable.dirty.ratio".into(), "0.25".into()),
        ("delete.retention.ms".into(), "86400000".into()),
        ("min.compaction.lag.ms".into(), "0".into()),
    ]
}

/// What one restore read.
#[derive(Debug, Default)]
pub struct Restored {
    /// One task per partition, ready to process.
    pub tasks: BTreeMap<i32, JoinTask>,
    pub records: u64,
    pub bytes: u64,
    /// Buffer entries restored (pending and tombstones).
    pub entries: u64,
    pub elapsed: Duration,
}

/// The restore consumer's context: end-of-partition is how a restore knows it is done, not an
/// error worth a log line.
struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_))
            || error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF);
        if !eof {
            tracing::warn!(error = %error, reason, "changelog reader");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for RestoreContext {}

/// Reads changelog partitions (assigned, never subscribed: no group membership).
pub struct ChangelogReader {
    consumer: BaseConsumer<RestoreContext>,
    topic: String,
    /// Longest wait for an abandoned transaction to be aborted.
    open_transaction_wait: Duration,
}

impl ChangelogReader {
    /// A reader of the settings' changelog topic.
    pub fn new(settings: &Settings) -> Result<Self> {
        let consumer: BaseConsumer<RestoreContext> = consumer_config(
            &settings.kafka,
            &format!("{}-restore", settings.kafka.join_group_id),
        )
        .set("enable.partition.eof", "true")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "10485760")
        .create_with_context(RestoreContext)?;
        Ok(ChangelogReader {
            consumer,
            topic: settings.join_changelog_topic(),
            open_transaction_wait: settings.kafka.transaction_timeout + Duration::from_secs(10),
        })
    }

    /// Reads `partitions` to their end and builds their tasks. Fails on a malformed record
    /// (never guesses) or when the end is not reached within `timeout`.
    pub fn restore(
        &self,
        partitions: &[i32],
        config: &JoinConfig,
        timeout: Duration,
    ) -> Result<Restored> {
        let started = Instant::now();
        let mut states: HashMap<i32, ChangelogRestore> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        let mut remaining = 0usize;
        for &p in partitions {
            states.insert(p, ChangelogRestore::new());
            let (low, high) =
                self.consumer
                    .fetch_watermarks(&self.topic, p, Duration::from_secs(10))?;
            if high > low {
                tpl.add_partition_offset(&self.topic, p, Offset::Beginning)?;
                remaining += 1;
            }
        }
        if remaining > 0 {
            self.consumer.assign(&tpl)?;
        }
        let mut done: Vec<i32> = Vec::new();
        let mut waiting: HashMap<i32, Instant> = HashMap::new();
        let mut last_check = Instant::now();
        let mut waited = false;
        while done.len() < remaining {
            if started.elapsed() > timeout {
                let _ = self.consumer.unassign();
                return Err(WorkerError::State(format!(
                    "restoring `{}` partitions {partitions:?} did not finish within {timeout:?}",
                    self.topic
                )));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    let Some(state) = states.get_mut(&m.partition()) else {
                        continue;
                    };
                    state
                        .apply(m.key().unwrap_or_default(), m.payload())
                        .map_err(|e| {
                            WorkerError::State(format!(
                                "changelog `{}`[{}]@{}: {e}",
                                self.topic,
                                m.partition(),
                                m.offset()
                            ))
                        })?;
                }
                Some(Err(KafkaError::PartitionEOF(p))) if !done.contains(&p) => {
                    waiting.entry(p).or_insert_with(Instant::now);
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    tracing::warn!(error = %e, topic = %self.topic, "reading the changelog")
                }
                None => {}
            }
            // A partition at its visible end is done once that end is the high watermark; an
            // abort marker may move it there without another end-of-partition event, so the
            // check repeats.
            if !waiting.is_empty() && last_check.elapsed() >= Duration::from_millis(100) {
                last_check = Instant::now();
                let positions = self.consumer.position()?;
                let mut finished = Vec::new();
                for (&p, since) in &waiting {
                    let (_, high) =
                        self.consumer
                            .fetch_watermarks(&self.topic, p, Duration::from_secs(10))?;
                    let position = positions
                        .find_partition(&self.topic, p)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        })
                        .unwrap_or(-1);
                    if position >= high {
                        finished.push(p);
                    } else if since.elapsed() > self.open_transaction_wait {
                        return Err(WorkerError::State(format!(
                            "changelog `{}`[{p}] stays at {position} below its end {high} for {:?}: a transaction is still open",
                            self.topic, self.open_transaction_wait
                        )));
                    } else {
                        waited = true;
                    }
                }
                for p in finished {
                    waiting.remove(&p);
                    done.push(p);
                }
            }
        }
        if remaining > 0 {
            self.consumer.unassign()?;
        }
        if waited {
            info!("changelog restore waited for an abandoned transaction to end");
        }
        let mut out = Restored::default();
        for (p, state) in states {
            out.records += state.records();
            out.bytes += state.bytes();
            out.entries += state.entries() as u64;
            let task = state
                .into_task(config.clone())
                .map_err(|e| WorkerError::State(format!("changelog `{}`[{p}]: {e}", self.topic)))?;
            out.tasks.insert(p, task);
        }
        out.elapsed = started.elapsed();
        info!(
            topic = %self.topic,
            partitions = ?partitions,
            records = out.records,
            bytes = out.bytes,
            entries = out.entries,
            seconds = out.elapsed.as_secs_f64(),
            "join state restored"
        );
        Ok(out)
    }
}
