//! The sources stage's state and its hooks: what the runtime's loop ([`crate::runtime`])
//! calls.
//!
//! | hook | the sources stage |
//! |---|---|
//! | `on_record` | the record's source found by topic, offered to its intake; predictions, dead letters and changelog changes kept for the batch |
//! | `on_tick` | nothing: pairing follows event time, which only records move |
//! | `take_batch` | the kept records, the watermarks that moved, every source partition's next offset, the counts since the last batch |
//! | `committed` | the batch's counts become final |
//! | `aborted` | exactly-once: the kept records are dropped (the rewind reads their input again) |
//! | `rewound` | every intake rebuilt from the changelog |
//! | `assigned` | the single-member check; the intakes restored from the changelog on the first assignment |
//! | `revoked` | the partitions' positions dropped; when the open work did not commit, the intakes too (restored at the next assignment) |

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use driftwatch_codec::encode_prediction;
use driftwatch_oip::{
    IntakeCounters, Message as SourceMessage, Output, PendingChange, SourceIntake,
};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, error, info, warn};

use super::batch::{dead_letter, plus, since, OutRecord, SourcesBatch};
use super::{lock, pending, SourcesStats};
use crate::changelog::ChangelogReader;
use crate::error::{Result, WorkerError};
use crate::runtime::{InputPartition, Stage};
use crate::settings::Settings;
use crate::topics::TopicChecker;

/// How long one changelog restore may take before the stage gives up (and restarts).
const RESTORE_TIMEOUT: Duration = Duration::from_secs(240);

/// One `[[sources]]` entry's intake and counts.
pub(super) struct Source {
    pub(super) intake: SourceIntake,
    /// The intake's counters at the last batch (or restore): what is newer goes in the next
    /// batch.
    at_batch: IntakeCounters,
    /// The watermark last written to the changelog.
    written_watermark: i64,
}

impl Source {
    fn new(config: driftwatch_oip::SourceConfig) -> Self {
        let intake = SourceIntake::new(config);
        Source {
            at_batch: intake.counters(),
            written_watermark: intake.watermark(),
            intake,
        }
    }
}

/// The sources stage's state, owned by its loop.
pub(crate) struct Sourcing {
    settings: Settings,
    pub(super) sources: Vec<Source>,
    predictions_topic: String,
    dead_letter_topic: String,
    changelog_topic: String,
    group: String,
    pub(super) exactly_once: bool,
    changelog: Option<ChangelogReader>,
    /// Partition counts of the source topics (the single-member check).
    checker: TopicChecker,
    /// Next offset of every source partition read since the assignment.
    positions: BTreeMap<(String, i32), i64>,
    held: BTreeSet<(String, i32)>,
    /// Whether the intakes hold the committed state (restored, or built since).
    restored: bool,
    /// Records for the next batch.
    records: Vec<OutRecord>,
    pub(super) stats: Arc<Mutex<SourcesStats>>,
}

impl Sourcing {
    pub(super) fn new(
        settings: Settings,
        changelog: Option<ChangelogReader>,
        checker: TopicChecker,
        stats: Arc<Mutex<SourcesStats>>,
    ) -> Self {
        Sourcing {
            sources: settings.sources.iter().cloned().map(Source::new).collect(),
            predictions_topic: settings.topics.predictions.clone(),
            dead_letter_topic: settings.topics.dead_letter.clone(),
            changelog_topic: settings.sources_changelog_topic(),
            group: settings.sources_group_id(),
            exactly_once: settings.kafka.exactly_once(),
            settings,
            changelog,
            checker,
            positions: BTreeMap::new(),
            held: BTreeSet::new(),
            restored: false,
            records: Vec::new(),
            stats,
        }
    }

    /// Fresh intakes, as before any record.
    fn reset(&mut self) {
        self.sources = self
            .settings
            .sources
            .iter()
            .cloned()
            .map(Source::new)
            .collect();
        self.records.clear();
    }

    /// Rebuilds every intake from the changelog: the waiting halves offered again in log
    /// order, then the watermarks (see [`super::pending`]).
    fn restore(&mut self) -> Result<()> {
        self.reset();
        let Some(reader) = &self.changelog else {
            self.restored = true;
            return Ok(());
        };
        // The latest value of each key, with the offset of its first write since its last
        // delete (the order in which the halves started waiting).
        let mut latest: BTreeMap<Vec<u8>, (i64, Option<Vec<u8>>)> = BTreeMap::new();
        let totals = reader.read_partitions(&[0], RESTORE_TIMEOUT, |m| {
            let key = m.key().unwrap_or_default().to_vec();
            let value = m.payload().map(<[u8]>::to_vec);
            let order = match latest.get(&key) {
                Some((o, Some(_))) if value.is_some() => *o,
                _ => m.offset(),
            };
            latest.insert(key, (order, value));
            Ok(())
        })?;
        let bad = |what: String| WorkerError::State(format!("sources changelog: {what}"));
        let index: BTreeMap<String, usize> = self
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (s.intake.config().name.clone(), i))
            .collect();
        let mut halves: Vec<(i64, usize, pending::KeptRecord)> = Vec::new();
        let mut watermarks: Vec<(usize, i64)> = Vec::new();
        for (key, (order, value)) in &latest {
            let Some(value) = value else { continue };
            let parsed = pending::parse_key(key)
                .ok_or_else(|| bad(format!("key {:?}", String::from_utf8_lossy(key))))?;
            let (pending::Key::Half { source } | pending::Key::Watermark { source }) = parsed;
            let Some(&i) = index.get(source) else {
                // A source no longer configured: its halves are forgotten.
                warn!(
                    source,
                    "changelog entry of a source no longer configured: dropped"
                );
                continue;
            };
            match parsed {
                pending::Key::Half { .. } => {
                    halves.push((*order, i, pending::decode_half(value).map_err(bad)?))
                }
                pending::Key::Watermark { .. } => {
                    watermarks.push((i, pending::decode_watermark(value).map_err(bad)?))
                }
            }
        }
        halves.sort_by_key(|(order, _, _)| *order);
        let restored = halves.len() as u64;
        for (_, i, r) in halves {
            let headers: Vec<(&str, &[u8])> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            let msg = SourceMessage {
                topic: &r.topic,
                headers: &headers,
                payload: &r.payload,
            };
            let out = self.sources[i].intake.offer(&msg, r.time);
            if !out.is_empty() {
                warn!(
                    count = out.len(),
                    "restored halves produced output: kept as unpaired"
                );
            }
        }
        for (i, w) in watermarks {
            let out = self.sources[i].intake.advance(w);
            if !out.is_empty() {
                warn!(count = out.len(), "restored watermark expired halves");
            }
        }
        for s in &mut self.sources {
            // Offering them again is no new input: the counts start from here.
            s.intake.take_changes();
            s.at_batch = s.intake.counters();
            s.written_watermark = s.intake.watermark();
        }
        self.restored = true;
        info!(topic = %self.changelog_topic, records = totals.records, bytes = totals.bytes, halves = restored, seconds = totals.elapsed.as_secs_f64(), "sources state restored");
        let mut s = lock(&self.stats);
        s.restores += 1;
        s.restore_records += totals.records;
        s.restore_bytes += totals.bytes;
        s.restored_halves += restored;
        s.restore_seconds += totals.elapsed.as_secs_f64();
        Ok(())
    }

    /// Keeps what one offer produced for the next batch.
    fn keep_outputs(&mut self, i: usize, msg: &BorrowedMessage<'_>, outputs: Vec<Output>) {
        let name = self.sources[i].intake.config().name.clone();
        for o in outputs {
            match o {
                Output::Prediction(p) => {
                    let mut payload = Vec::with_capacity(256);
                    match encode_prediction(&p, &mut payload) {
                        Ok(()) => self.records.push(OutRecord {
                            topic: self.predictions_topic.clone(),
                            key: p.request_id.into_bytes(),
                            payload: Some(payload),
                            headers: None,
                            partition: None,
                        }),
                        Err(e) => error!(error = %e, source = %name, "prediction not encodable"),
                    }
                }
                Output::DeadLetter { reason, detail, id } => {
                    debug!(source = %name, reason, %detail, "dead-lettered");
                    self.records.push(dead_letter(
                        &self.dead_letter_topic,
                        &name,
                        msg,
                        reason,
                        &detail,
                        id.as_deref(),
                    ));
                }
                Output::Unpaired { id, kind } => {
                    debug!(source = %name, %id, ?kind, "unpaired half")
                }
                Output::Duplicate { id, kind } => {
                    debug!(source = %name, %id, ?kind, "duplicate half")
                }
            }
        }
    }

    /// Exactly-once: the changelog records of how the waiting halves changed.
    fn keep_changes(&mut self, i: usize, time: i64, message: &SourceMessage<'_>) {
        let changes = self.sources[i].intake.take_changes();
        if !self.exactly_once {
            return;
        }
        let name = self.sources[i].intake.config().name.clone();
        for c in changes {
            let (id, value) = match c {
                PendingChange::Waiting(id) => {
                    let v =
                        pending::encode_half(time, message.topic, message.headers, message.payload);
                    (id, Some(v))
                }
                PendingChange::Left(id) => (id, None),
            };
            self.records.push(OutRecord {
                topic: self.changelog_topic.clone(),
                key: pending::half_key(&name, &id),
                payload: value,
                headers: None,
                partition: Some(0),
            });
        }
    }

    fn offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &self.positions {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                error!(error = %e, topic, partition, "offset not committed");
            }
        }
        tpl
    }

    /// The sources stage pairs halves across all its partitions, so it must hold every
    /// partition of every source topic it reads: a second member of its group would split
    /// them (see the module docs of [`super`]).
    fn check_single_member(&self) -> Result<()> {
        let topics: BTreeSet<&str> = self.held.iter().map(|(t, _)| t.as_str()).collect();
        for topic in topics {
            let all = self.checker.partitions(topic)?;
            let held = self
                .held
                .iter()
                .filter(|(t, _)| t.as_str() == topic)
                .count();
            if held < all {
                return Err(WorkerError::Config(format!(
                    "the sources stage holds {held} of the {all} partitions of `{topic}`: another member of the group `{}` holds the rest. The sources stage pairs requests and responses across partitions and runs as one member: run `--role sources` (or a role including it) on one worker only",
                    self.group
                )));
            }
        }
        Ok(())
    }

    fn publish_assignment(&self) {
        let mut s = lock(&self.stats);
        s.assigned = self.held.iter().cloned().collect();
    }
}

impl Stage for Sourcing {
    type Batch = SourcesBatch;

    fn on_record(&mut self, msg: &BorrowedMessage<'_>, now: i64) -> Option<InputPartition> {
        self.positions
            .insert((msg.topic().to_owned(), msg.partition()), msg.offset() + 1);
        let Some(i) = self
            .sources
            .iter()
            .position(|s| s.intake.config().reads(msg.topic()))
        else {
            warn!(
                topic = msg.topic(),
                "record of a topic no source reads: skipped"
            );
            return None;
        };
        let time = msg.timestamp().to_millis().unwrap_or(now);
        let headers: Vec<(&str, &[u8])> = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key, h.value.unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let message = SourceMessage {
            topic: msg.topic(),
            headers: &headers,
            payload: msg.payload().unwrap_or_default(),
        };
        let outputs = self.sources[i].intake.offer(&message, time);
        self.keep_changes(i, time, &message);
        self.keep_outputs(i, msg, outputs);
        lock(&self.stats).records_in += 1;
        None
    }

    fn check(&mut self) -> Result<()> {
        if !self.restored && !self.held.is_empty() {
            // Work that did not commit was dropped while partitions stay held: reading on
            // would skip their input. A restart restores the committed state.
            return Err(WorkerError::State(
                "sources: state dropped while partitions are held".into(),
            ));
        }
        Ok(())
    }

    fn on_tick(&mut self, _now: i64, _paused: &HashSet<InputPartition>) -> Vec<InputPartition> {
        Vec::new()
    }

    fn take_batch(&mut self) -> SourcesBatch {
        let mut counts = Vec::with_capacity(self.sources.len());
        for s in &mut self.sources {
            let now = s.intake.counters();
            counts.push(since(&now, &s.at_batch));
            s.at_batch = now;
            let w = s.intake.watermark();
            if self.exactly_once && w != s.written_watermark {
                s.written_watermark = w;
                self.records.push(OutRecord {
                    topic: self.changelog_topic.clone(),
                    key: pending::watermark_key(&s.intake.config().name),
                    payload: Some(w.to_be_bytes().to_vec()),
                    headers: None,
                    partition: Some(0),
                });
            }
        }
        SourcesBatch {
            records: std::mem::take(&mut self.records),
            offsets: self.offsets(),
            counts,
        }
    }

    fn committed(&mut self, counts: Vec<IntakeCounters>, _took: Duration) {
        let pending: Vec<usize> = self.sources.iter().map(|s| s.intake.pending()).collect();
        let mut st = lock(&self.stats);
        if self.exactly_once {
            st.transactions_committed += 1;
        }
        for (i, c) in counts.iter().enumerate() {
            let Some(s) = self.sources.get(i) else { break };
            let name = s.intake.config().name.clone();
            let e = st.sources.entry(name).or_default();
            e.counters = plus(&e.counters, c);
            e.pending = pending[i] as u64;
        }
    }

    fn aborted(&mut self, _counts: Option<Vec<IntakeCounters>>) {
        if !self.exactly_once {
            error!("some sources output was not delivered; offsets not committed");
            return;
        }
        lock(&self.stats).transactions_aborted += 1;
        // The rewind reads the input again; its output comes again from the restored state.
        self.records.clear();
        self.restored = false;
    }

    fn rewound(&mut self) -> Result<()> {
        self.positions.clear();
        self.restore()
    }

    fn assigned(&mut self, tpl: &TopicPartitionList) -> Result<()> {
        for e in tpl.elements() {
            self.held.insert((e.topic().to_owned(), e.partition()));
        }
        self.publish_assignment();
        self.check_single_member()?;
        if !self.restored {
            self.restore()?;
        }
        Ok(())
    }

    fn revoked(&mut self, tpl: &TopicPartitionList, lost: bool) {
        for e in tpl.elements() {
            let at = (e.topic().to_owned(), e.partition());
            self.held.remove(&at);
            self.positions.remove(&at);
        }
        if lost {
            // The open work did not commit: the intakes no longer match the changelog.
            self.reset();
            self.restored = false;
            if !self.held.is_empty() {
                warn!("sources state dropped while partitions are still held: restored at the next assignment");
            }
        }
        self.publish_assignment();
    }

    fn publish(&mut self) {
        let mut st = lock(&self.stats);
        for s in &self.sources {
            let e = st
                .sources
                .entry(s.intake.config().name.clone())
                .or_default();
            e.pending = s.intake.pending() as u64;
        }
    }
}
