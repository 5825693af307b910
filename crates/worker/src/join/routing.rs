//! Routing check of the join's inputs: every keyed record read is checked against its key's
//! murmur2 partition ([`driftwatch_core::join::routing`]) for the inputs' partition count.
//!
//! A misrouted record is processed as any other (its partner is on another partition, so it
//! mostly ends expired unlabeled or as an orphan label: the join's accounting is unchanged and
//! still adds up); it is also counted here, per topic. The counts are of records *read*, like
//! `events_in`: a record read again after an aborted transaction or a rebalance counts again.
//! They are published with the stage's stats (`/metrics`: `driftwatch_join_misrouted_total`
//! and `driftwatch_join_misrouted_share`; `/readyz`: `misrouted`), and a warning naming the
//! likely partitioner is logged at most once a minute per topic.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use driftwatch_core::join::routing::{check, Partitioner, Routing, RoutingTally};
use driftwatch_core::join::Input;
use serde::Serialize;
use tracing::warn;

use super::partition::input_index;
use crate::settings::JoinSettings;

/// A topic's misrouted records are logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// One input topic's routing, as published.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TopicRouting {
    /// Keyed records checked, misrouted, misrouted but on their CRC32 partition, unkeyed.
    #[serde(flatten)]
    pub tally: RoutingTally,
    /// Misrouted share of the checked records.
    pub share: f64,
    /// The partitioner the misrouted records most likely came from.
    pub likely_partitioner: Partitioner,
    /// The share is above `join.misrouted_alert_share` (over enough records).
    pub alert: bool,
    /// Misrouted records re-published to the repartition topic (`join.misrouted =
    /// "repartition"`): their copies are what the join accounts, not them.
    pub repartitioned: u64,
}

impl TopicRouting {
    /// The published form of `tally` under the given threshold.
    pub fn of(tally: RoutingTally, alert_share: f64, min_records: u64) -> Self {
        TopicRouting {
            tally,
            share: tally.share(),
            likely_partitioner: tally.likely(),
            alert: tally.crossed(alert_share, min_records),
            repartitioned: 0,
        }
    }
}

/// The check's state, owned by the join's loop.
pub(super) struct RoutingCheck {
    partitions: i32,
    alert_share: f64,
    min_records: u64,
    /// Per input, by [`input_index`].
    tallies: [RoutingTally; 2],
    repartitioned: [u64; 2],
    last_log: [Option<Instant>; 2],
}

impl RoutingCheck {
    pub(super) fn new(partitions: usize, join: &JoinSettings) -> Self {
        RoutingCheck {
            partitions: i32::try_from(partitions).unwrap_or(i32::MAX),
            alert_share: join.misrouted_alert_share,
            min_records: join.misrouted_min_records,
            tallies: [RoutingTally::default(); 2],
            repartitioned: [0; 2],
            last_log: [None; 2],
        }
    }

    /// Where a record with `key` read from `partition` belongs.
    #[inline]
    pub(super) fn check(&self, key: Option<&[u8]>, partition: i32) -> Routing {
        check(key, partition, self.partitions)
    }

    /// Counts one record of `input` (read from `topic`) with its [`check`](Self::check).
    #[inline]
    pub(super) fn count(&mut self, input: Input, topic: &str, partition: i32, routing: Routing) {
        let i = input_index(input);
        self.tallies[i].add(routing);
        if let Routing::Misrouted { expected, .. } = routing {
            if self.last_log[i].is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                self.last_log[i] = Some(Instant::now());
                let t = &self.tallies[i];
                warn!(
                    topic, partition, expected_partition = expected,
                    checked = t.checked, misrouted = t.misrouted, share = t.share(),
                    likely_partitioner = t.likely().describe(),
                    "input records on the wrong partition for their key: they cannot meet their partners unless join.misrouted = repartition (counted under misrouted; logged at most once a minute)"
                );
            }
        }
    }

    /// A misrouted record of `input` was re-published instead of joined.
    pub(super) fn repartitioned(&mut self, input: Input) {
        self.repartitioned[input_index(input)] += 1;
    }

    /// Per topic (`topics` by [`input_index`]), the routing so far.
    pub(super) fn published(&self, topics: [&str; 2]) -> BTreeMap<String, TopicRouting> {
        topics
            .iter()
            .zip(self.tallies.iter().zip(self.repartitioned))
            .filter(|(_, (t, _))| t.checked + t.unkeyed > 0)
            .map(|(topic, (t, repartitioned))| {
                let r = TopicRouting {
                    repartitioned,
                    ..TopicRouting::of(*t, self.alert_share, self.min_records)
                };
                (topic.to_string(), r)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use driftwatch_core::join::routing::{crc32_partition, murmur2_partition};

    use super::*;

    impl RoutingCheck {
        fn observe(&mut self, input: Input, topic: &str, key: Option<&[u8]>, partition: i32) {
            let routing = self.check(key, partition);
            self.count(input, topic, partition, routing);
        }
    }

    #[test]
    fn a_crc32_label_topic_is_flagged_and_a_murmur2_prediction_topic_is_not() {
        let mut c = RoutingCheck::new(4, &JoinSettings::default());
        for i in 0..1_000 {
            let key = format!("req-{i}");
            let k = key.as_bytes();
            c.observe(Input::Predictions, "p", Some(k), murmur2_partition(k, 4));
            c.observe(Input::Labels, "g", Some(k), crc32_partition(k, 4));
        }
        c.observe(Input::Labels, "g", None, 0);
        let out = c.published(["p", "g"]);
        let (p, g) = (&out["p"], &out["g"]);
        assert_eq!(
            (p.tally.checked, p.tally.misrouted, p.alert),
            (1_000, 0, false)
        );
        assert_eq!(p.likely_partitioner, Partitioner::Murmur2);
        assert!((g.share - 0.75).abs() < 0.05, "{}", g.share);
        assert_eq!(g.tally.unkeyed, 1);
        assert!(g.alert);
        assert_eq!(g.likely_partitioner, Partitioner::ConsistentRandom);
        let json = serde_json::to_value(g).unwrap();
        assert_eq!(json["likely_partitioner"], "consistent_random");
        assert_eq!(json["checked"], 1_000);
    }

    #[test]
    fn nothing_read_publishes_nothing() {
        let c = RoutingCheck::new(4, &JoinSettings::default());
        assert!(c.published(["p", "g"]).is_empty());
    }
}
