//! The join's committed output, summed the way the acceptance of exactly-once states it, and
//! compared with a scenario's offline reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use driftwatch_codec::from_avro;
use driftwatch_core::{JoinCounters, ModelPartial};
use driftwatch_worker::settings::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::scenario::Scenario;

/// Per model id: the join outcome counts the acceptance names, then the predictions taken in
/// (`received_predictions`, which a crash or an abort must not count twice either), and the
/// confusion cells.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcomes {
    pub counts: BTreeMap<String, [u64; 7]>,
    pub confusion: BTreeMap<String, BTreeMap<(String, String), u64>>,
}

fn outcome_counts(c: &JoinCounters) -> [u64; 7] {
    [
        c.matched,
        c.expired_unlabeled,
        c.orphan_labels,
        c.duplicate_predictions,
        c.duplicate_labels,
        c.late_labels,
        c.received_predictions,
    ]
}

impl Outcomes {
    /// What the offline reference of `scenario` says.
    pub fn reference(scenario: &Scenario) -> Outcomes {
        let mut o = Outcomes::default();
        for (model, c) in &scenario.expected {
            let counts = outcome_counts(c);
            if counts.iter().any(|&n| n > 0) {
                o.counts.insert(model.clone(), counts);
            }
        }
        o.confusion = scenario.confusion.clone();
        o.confusion.retain(|_, cells| !cells.is_empty());
        o
    }

    /// Adds one partial.
    pub fn add(&mut self, p: &ModelPartial) {
        let counts = self.counts.entry(p.model_id.clone()).or_default();
        for (a, b) in counts.iter_mut().zip(outcome_counts(&p.counters)) {
            *a += b;
        }
        if counts.iter().all(|&n| n == 0) {
            self.counts.remove(&p.model_id);
        }
        for cell in &p.confusion {
            *self
                .confusion
                .entry(p.model_id.clone())
                .or_default()
                .entry((cell.predicted.clone(), cell.actual.clone()))
                .or_default() += cell.count;
        }
    }

    /// Every outcome counted.
    pub fn total(&self) -> u64 {
        self.counts.values().flatten().sum()
    }
}

/// Reads the committed partials from the start of the topic.
pub struct PartialsReader {
    consumer: BaseConsumer,
    pub seen: Outcomes,
    /// Per model id and bucket (start, width): predictions taken in (resolved or not),
    /// matched outcomes and correct ones — what the monitor's metrics count.
    pub buckets: BTreeMap<String, BTreeMap<(i64, i64), [u64; 3]>>,
}

impl PartialsReader {
    /// A reader of every partition of the settings' partials topic.
    pub fn new(s: &Settings, partitions: i32) -> PartialsReader {
        let consumer: BaseConsumer = driftwatch_worker::clients::consumer_config(
            &s.kafka,
            &crate::unique("partials-reader"),
        )
        .create()
        .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&s.topics.model_partials, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        PartialsReader {
            consumer,
            seen: Outcomes::default(),
            buckets: BTreeMap::new(),
        }
    }

    /// Reads for `d`.
    pub fn read_for(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if let Some(Ok(m)) = self.consumer.poll(Duration::from_millis(100)) {
                if driftwatch_worker::join_progress::is_progress(m.headers()) {
                    // The join's watermark announcements, not partials.
                    continue;
                }
                let p: ModelPartial =
                    from_avro(m.payload().expect("partial payload")).expect("partial decodes");
                self.seen.add(&p);
                let correct: u64 = p
                    .confusion
                    .iter()
                    .filter(|c| c.predicted == c.actual)
                    .map(|c| c.count)
                    .sum();
                let b = self
                    .buckets
                    .entry(p.model_id)
                    .or_default()
                    .entry((p.bucket_start, p.bucket_width_ms))
                    .or_default();
                b[0] += p.counters.received_predictions;
                b[1] += p.counters.matched;
                b[2] += correct;
            }
        }
    }

    /// Reads until the outcome total reaches `target` (or `timeout`), then a little longer so
    /// that anything counted twice would show.
    pub fn read_until(&mut self, target: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.seen.total() < target && Instant::now() < deadline {
            self.read_for(Duration::from_millis(500));
        }
        self.read_for(Duration::from_secs(5));
    }
}

/// Asserts that `seen` equals `reference` exactly, printing `logs` (worker log files) first when
/// it does not.
pub fn assert_reference(seen: &Outcomes, reference: &Outcomes, logs: &[std::path::PathBuf]) {
    if seen != reference {
        for l in logs {
            eprintln!("worker log: {}", l.display());
        }
    }
    assert_eq!(
        seen.counts, reference.counts,
        "committed outcome counts differ from the offline reference"
    );
    assert_eq!(
        seen.confusion, reference.confusion,
        "committed confusion matrices differ from the offline reference"
    );
}
