//! Where the backlog phase's two clocks stop. Both start when the join stage consumed its first
//! input.
//!
//! - **Join**: every input is read and the join group's committed offsets, as the broker has
//!   them, reached the end of every input partition: a successor would start past the whole
//!   backlog. Exactly-once, those offsets commit in the transactions that carry the partials of
//!   those inputs.
//! - **End to end**: the monitor's event time passed the end of the backlog's last epoch (its
//!   last event time, rounded up to a bucket), so every partial of the backlog is merged and its
//!   epoch judged; then the monitor committed: exactly-once, one of its transactions (outputs,
//!   state and the partials' offsets) committed after that; at-least-once, its group's
//!   committed offsets reached the end of the partials topic as it was then.
//!
//! The monitor applies an epoch once every join task announced a watermark past it. At the end
//! of a finite backlog nothing moves the join's watermark past the last epochs until its inputs
//! have been caught up and silent for `join.idle_timeout`, when it advances by processing time:
//! that wait, a join flush and a monitor commit are part of the end-to-end figure. (Every event
//! time of the backlog lies in the past: an epoch in the future would wait for the wall clock.)

use std::time::Duration;

use driftwatch_worker::clients::{consumer_config, metadata_client};
use driftwatch_worker::monitor::MonitorStats;
use driftwatch_worker::settings::{KafkaSettings, Settings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The end offsets (high watermarks) of every partition of `topics`.
pub fn end_offsets(kafka: &KafkaSettings, topics: &[&str]) -> anyhow::Result<TopicPartitionList> {
    let client = metadata_client(kafka)?;
    tokio::task::block_in_place(|| {
        let mut ends = TopicPartitionList::new();
        for topic in topics {
            let partitions = driftwatch_worker::topics::partition_count(
                client.client(),
                &kafka.bootstrap_servers,
                topic,
                TIMEOUT,
            )?;
            for p in 0..i32::try_from(partitions)? {
                let (_, high) = client.fetch_watermarks(topic, p, TIMEOUT)?;
                ends.add_partition_offset(topic, p, Offset::Offset(high))?;
            }
        }
        Ok(ends)
    })
}

/// A consumer group's committed offsets, read from the broker without joining the group.
pub struct Committed {
    consumer: BaseConsumer,
}

impl Committed {
    pub fn new(kafka: &KafkaSettings, group: &str) -> anyhow::Result<Self> {
        Ok(Committed {
            consumer: consumer_config(kafka, group).create()?,
        })
    }

    /// Whether the group committed, on every partition of `ends`, an offset at or past the
    /// partition's end there (an empty partition has nothing to commit).
    pub fn reached(&self, ends: &TopicPartitionList) -> anyhow::Result<bool> {
        let committed =
            tokio::task::block_in_place(|| self.consumer.committed_offsets(ends.clone(), TIMEOUT))?;
        Ok(ends.elements().iter().all(|e| {
            let Offset::Offset(end) = e.offset() else {
                return true;
            };
            end <= 0
                || committed
                    .find_partition(e.topic(), e.partition())
                    .is_some_and(|c| matches!(c.offset(), Offset::Offset(o) if o >= end))
        }))
    }
}

/// How the end-to-end criterion sees that the monitor committed.
pub enum MonitorCommits {
    /// Exactly-once: its transactions, counted in its stats.
    Transactions,
    /// At-least-once: its group's committed offsets on the partials topic.
    Offsets(Box<GroupOffsets>),
}

/// Where the monitor group's committed offsets are read.
pub struct GroupOffsets {
    group: Committed,
    kafka: KafkaSettings,
    partials_topic: String,
}

impl MonitorCommits {
    /// The way the settings' monitor commits.
    pub fn of(settings: &Settings) -> anyhow::Result<Self> {
        Ok(if settings.kafka.exactly_once() {
            MonitorCommits::Transactions
        } else {
            MonitorCommits::Offsets(Box::new(GroupOffsets {
                group: Committed::new(&settings.kafka, &settings.monitor.group_id)?,
                kafka: settings.kafka.clone(),
                partials_topic: settings.topics.model_partials.clone(),
            }))
        })
    }
}

/// The end-to-end completion criterion (see the module docs), fed the monitor's stats.
pub struct Finish {
    commits: MonitorCommits,
    /// The end of the backlog's last epoch.
    last_epoch_end: i64,
    /// Once the monitor's event time passed it: what the commit must go beyond.
    judged: Option<Judged>,
}

enum Judged {
    /// The monitor's committed transactions then.
    Transactions(u64),
    /// The end offsets of the partials topic then.
    Offsets(TopicPartitionList),
}

impl Finish {
    /// For a backlog whose last event time is `data_end`, in buckets of `bucket_width_ms`.
    pub fn new(commits: MonitorCommits, data_end: i64, bucket_width_ms: i64) -> Finish {
        let width = bucket_width_ms.max(1);
        Finish {
            commits,
            last_epoch_end: data_end
                .div_euclid(width)
                .saturating_add(1)
                .saturating_mul(width),
            judged: None,
        }
    }

    /// The end of the backlog's last epoch, event time.
    pub fn last_epoch_end(&self) -> i64 {
        self.last_epoch_end
    }

    /// Whether the monitor has judged the whole backlog and committed since.
    pub fn done(&mut self, monitor: &MonitorStats) -> anyhow::Result<bool> {
        match (&self.judged, &self.commits) {
            (None, commits) => {
                if monitor.progress_ms >= self.last_epoch_end {
                    self.judged = Some(match commits {
                        MonitorCommits::Transactions => {
                            Judged::Transactions(monitor.transactions_committed)
                        }
                        MonitorCommits::Offsets(g) => {
                            Judged::Offsets(end_offsets(&g.kafka, &[&g.partials_topic])?)
                        }
                    });
                }
                Ok(false)
            }
            // The monitor applies epochs and commits on one task, one after the other: a
            // transaction counted after the epochs were seen applied began after them.
            (Some(Judged::Transactions(then)), _) => Ok(monitor.transactions_committed > *then),
            (Some(Judged::Offsets(ends)), MonitorCommits::Offsets(g)) => g.group.reached(ends),
            (Some(Judged::Offsets(_)), MonitorCommits::Transactions) => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(progress_ms: i64, transactions_committed: u64) -> MonitorStats {
        MonitorStats {
            progress_ms,
            transactions_committed,
            ..MonitorStats::default()
        }
    }

    #[test]
    fn the_last_epoch_ends_at_the_next_bucket_boundary() {
        let end = |t| Finish::new(MonitorCommits::Transactions, t, 60_000).last_epoch_end;
        assert_eq!(end(125_000), 180_000);
        assert_eq!(end(120_000), 180_000);
        assert_eq!(end(119_999), 120_000);
    }

    #[test]
    fn exactly_once_ends_with_a_transaction_after_the_last_epoch() {
        let mut f = Finish::new(MonitorCommits::Transactions, 125_000, 60_000);
        let mut done = |s| f.done(&s).ok();
        assert_eq!(done(stats(170_000, 5)), Some(false));
        assert_eq!(done(stats(180_000, 5)), Some(false));
        assert_eq!(done(stats(180_000, 5)), Some(false));
        assert_eq!(done(stats(181_000, 6)), Some(true));
    }
}
