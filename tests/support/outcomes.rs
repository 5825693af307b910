//! The join's committed output, summed the way the acceptance of exactly-once states it, and
//! compared with a scenario's offline reference.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use driftwatch_codec::from_avro;
use driftwatch_core::{JoinCounters, ModelPartial};
use driftwatch_worker::settings::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
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

/// Every committed dead letter's origin `(topic, partition, offset)` (its `driftwatch.source.*`
/// headers), with how many times it is on the dead-letter topic, read `read_committed` from
/// the beginning of every partition to the end.
pub fn dead_letter_origins(s: &Settings) -> BTreeMap<(String, i32, i64), u32> {
    let topic = &s.topics.dead_letter;
    let consumer: BaseConsumer =
        driftwatch_worker::clients::consumer_config(&s.kafka, &crate::unique("dead-letter-reader"))
            .create()
            .expect("reader");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            ends.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
    }
    let mut origins = BTreeMap::new();
    if ends.is_empty() {
        return origins;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut idle = 0;
    // Ends at every partition's high watermark, or after 5 s without a record (a partition's
    // last stable offset can stay below it while a running worker's transaction is open).
    while Instant::now() < deadline && idle < 25 && !ends.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                if ends
                    .get(&m.partition())
                    .is_some_and(|&h| m.offset() + 1 >= h)
                {
                    ends.remove(&m.partition());
                }
                let Some(headers) = m.headers() else {
                    panic!("dead letter at offset {} without headers", m.offset());
                };
                let header = |name: &str| -> String {
                    headers
                        .iter()
                        .find(|h| h.key == name)
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .unwrap_or_else(|| panic!("dead letter without header {name}"))
                };
                let origin = (
                    header("driftwatch.source.topic"),
                    header("driftwatch.source.partition")
                        .parse()
                        .expect("partition header"),
                    header("driftwatch.source.offset")
                        .parse()
                        .expect("offset header"),
                );
                *origins.entry(origin).or_insert(0) += 1;
            }
            _ => idle += 1,
        }
    }
    origins
}

/// Each garbage record of `scenario` is on the dead-letter topic exactly once.
pub fn assert_dead_letters_once(s: &Settings, scenario: &Scenario) {
    let origins = dead_letter_origins(s);
    let repeated: Vec<_> = origins.iter().filter(|(_, &n)| n > 1).collect();
    assert!(
        repeated.is_empty(),
        "dead letters written more than once (origin: times): {repeated:?}"
    );
    assert_eq!(
        origins.len() as u64,
        scenario.garbage,
        "dead letters committed vs. garbage records sent"
    );
}
