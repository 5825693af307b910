//! Dead letters: input that never reached a task (undecodable, refused by the intake rules)
//! goes to the dead-letter topic with headers saying where it came from and why, and is
//! counted as `dead_lettered` under its model when known (`("unknown", "")` otherwise).
//!
//! | header | value |
//! |---|---|
//! | `driftwatch.source.topic`, `.partition`, `.offset` | where the record was read |
//! | `driftwatch.error.kind` | the codec's or the intake rule's stable kind (`oversized`, `missing_request_id`, ...) |
//! | `driftwatch.error.message` | the error, for people |
//!
//! The key is copied; the payload too, except an oversized one (the headers say where to find
//! it). Dead letters wait in the state for the next batch, so they go out with the work of the
//! same interval (exactly-once: in its transaction; nothing may be produced into a transaction
//! that is committing).
//!
//! Exactly-once, the counts of the open transaction's rejections stay apart until it commits
//! and are dropped if it aborts (the input is read again). Committed offsets stop at the
//! oldest record still queued in a task, while a record is rejected as soon as it is read: a
//! dead letter (and its count) therefore waits until a batch's offsets cover its record, so
//! the record is never read again after that batch commits — not by this worker after a
//! rewind, and not by the next owner after a crash ([`Rejections::take_covered`]). Within
//! one process, [`Rejections`] also remembers per input partition the highest rejected offset
//! a committed transaction holds, and such a record is neither counted nor dead-lettered twice.

use std::collections::{BTreeMap, HashMap};

use driftwatch_codec::CodecError;
use driftwatch_core::join::{Input, Rejection};
use driftwatch_core::JoinCounters;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::Message;

use super::stage::Join;
use super::stats::warn_rate_limited;

/// Counts per (model id, model version).
pub(super) type PerModel = BTreeMap<(String, String), JoinCounters>;
/// Per input partition, the highest offset of a rejected record.
pub(super) type RejectedThrough = HashMap<(usize, i32), i64>;

/// The model of input that cannot be attributed to one.
pub(super) const UNKNOWN: (&str, &str) = ("unknown", "");

/// Why an input was dead-lettered.
pub(super) struct Reject {
    pub(super) kind: &'static str,
    pub(super) message: String,
    pub(super) model: (String, String),
}

impl Reject {
    /// Undecodable: the model is unknown.
    pub(super) fn codec(e: CodecError) -> Self {
        Reject {
            kind: e.kind(),
            message: e.to_string(),
            model: (UNKNOWN.0.to_string(), UNKNOWN.1.to_string()),
        }
    }

    /// Refused by an intake rule, for `model`.
    pub(super) fn rule(r: Rejection, model: (&str, &str)) -> Self {
        Reject {
            kind: r.kind.as_str(),
            message: r.message,
            model: (model.0.to_string(), model.1.to_string()),
        }
    }
}

/// A dead letter waiting for the next batch.
pub(crate) struct DeadLetter {
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Option<Vec<u8>>,
    pub(super) headers: OwnedHeaders,
    /// Where its record was read: source topic (see [`super::partition::SOURCES`]),
    /// partition, offset.
    origin: (usize, i32, i64),
    /// The input it is counted under.
    input: Input,
    /// The model it is counted under.
    model: (String, String),
}

/// The counts of rejected input and the dead letters not yet in a batch.
#[derive(Default)]
pub(super) struct Rejections {
    /// Final counts, per model.
    counted: PerModel,
    /// Exactly-once: the counts of the dead letters waiting for a batch (a batch's own come
    /// back through [`Rejections::commit`] when it commits).
    uncommitted: PerModel,
    /// Exactly-once: per input partition, the highest rejected offset a committed transaction
    /// holds.
    through: RejectedThrough,
    /// Dead letters for the next batch.
    pub(super) letters: Vec<DeadLetter>,
}

impl Rejections {
    /// Every count, final or not.
    pub(super) fn counted(&self) -> impl Iterator<Item = (&(String, String), &JoinCounters)> {
        self.counted.iter().chain(&self.uncommitted)
    }

    /// A batch's counts and high offsets are final.
    pub(super) fn commit(&mut self, counted: PerModel, through: RejectedThrough) {
        for (k, offset) in through {
            let e = self.through.entry(k).or_insert(offset);
            *e = (*e).max(offset);
        }
        for (k, c) in counted {
            let e = self.counted.entry(k).or_default();
            *e = e.merged(&c);
        }
    }

    /// Exactly-once: the dead letters whose records lie before `next` (per input partition,
    /// the next offset the batch commits), with their counts and high offsets; the others
    /// wait for a batch that covers them. A record at or after the committed offset is read
    /// again after a crash, so its dead letter must not be committed before that offset is.
    pub(super) fn take_covered(
        &mut self,
        next: &HashMap<(usize, i32), i64>,
    ) -> (Vec<DeadLetter>, PerModel, RejectedThrough) {
        let (covered, waiting): (Vec<DeadLetter>, Vec<DeadLetter>) =
            std::mem::take(&mut self.letters)
                .into_iter()
                .partition(|d| {
                    let (input, partition, offset) = d.origin;
                    next.get(&(input, partition)).is_some_and(|&n| offset < n)
                });
        self.letters = waiting;
        let mut counts = PerModel::new();
        let mut through = RejectedThrough::new();
        for d in &covered {
            let (source, partition, offset) = d.origin;
            let c = counts.entry(d.model.clone()).or_default();
            count_rejected(c, d.input);
            if let Some(open) = self.uncommitted.get_mut(&d.model) {
                uncount_rejected(open, d.input);
            }
            let e = through.entry((source, partition)).or_insert(offset);
            *e = (*e).max(offset);
        }
        self.uncommitted.retain(|_, c| c.dead_lettered > 0);
        (covered, counts, through)
    }

    /// Partitions left this worker: their waiting dead letters and counts are dropped (their
    /// records are read again by the next owner, from before them).
    pub(super) fn forget_partitions(&mut self, partitions: &std::collections::HashSet<i32>) {
        let (gone, kept): (Vec<DeadLetter>, Vec<DeadLetter>) = std::mem::take(&mut self.letters)
            .into_iter()
            .partition(|d| partitions.contains(&d.origin.1));
        self.letters = kept;
        for d in gone {
            if let Some(open) = self.uncommitted.get_mut(&d.model) {
                uncount_rejected(open, d.input);
            }
        }
        self.uncommitted.retain(|_, c| c.dead_lettered > 0);
    }

    /// The open transaction aborted: its counts and dead letters are dropped.
    pub(super) fn forget_uncommitted(&mut self) {
        self.uncommitted.clear();
        self.letters.clear();
    }
}

fn count_rejected(c: &mut JoinCounters, input: Input) {
    match input {
        Input::Predictions => c.predictions += 1,
        Input::Labels => c.labels += 1,
    }
    c.dead_lettered += 1;
}

fn uncount_rejected(c: &mut JoinCounters, input: Input) {
    match input {
        Input::Predictions => c.predictions = c.predictions.saturating_sub(1),
        Input::Labels => c.labels = c.labels.saturating_sub(1),
    }
    c.dead_lettered = c.dead_lettered.saturating_sub(1);
}

impl Join {
    /// Counts a rejected record and keeps its dead letter for the next batch.
    pub(super) fn dead_letter(&mut self, msg: &BorrowedMessage<'_>, input: Input, reject: Reject) {
        let source = self.source_of(msg.topic());
        let r = &mut self.rejections;
        if self.exactly_once {
            let at = (source, msg.partition());
            if r.through.get(&at).is_some_and(|&o| msg.offset() <= o) {
                // Read again after a rewind: counted and dead-lettered by a committed
                // transaction already.
                return;
            }
        }
        let counts = if self.exactly_once {
            &mut r.uncommitted
        } else {
            &mut r.counted
        };
        count_rejected(counts.entry(reject.model.clone()).or_default(), input);
        warn_rate_limited(
            &mut self.meters.warnings,
            reject.kind,
            &format!(
                "dead-lettered {}[{}]@{}: {}",
                msg.topic(),
                msg.partition(),
                msg.offset(),
                reject.message
            ),
        );
        let headers = dead_letter_headers(msg, reject.kind, &reject.message);
        // An oversized payload is not copied: the headers say where to find it.
        let payload = if reject.kind == "oversized" {
            None
        } else {
            msg.payload()
        };
        r.letters.push(DeadLetter {
            key: msg.key().map(<[u8]>::to_vec),
            payload: payload.map(<[u8]>::to_vec),
            headers,
            origin: (source, msg.partition(), msg.offset()),
            input,
            model: reject.model,
        });
        *self
            .meters
            .events_out
            .entry(self.topics.dead_letter.clone())
            .or_default() += 1;
    }
}

/// The headers of every dead letter: where the record came from (`driftwatch.source.topic`,
/// `.partition`, `.offset`) and why it was rejected (`driftwatch.error.kind`, `.message`).
pub(crate) fn dead_letter_headers(
    msg: &BorrowedMessage<'_>,
    kind: &str,
    message: &str,
) -> OwnedHeaders {
    let partition = msg.partition().to_string();
    let offset = msg.offset().to_string();
    OwnedHeaders::new()
        .insert(Header {
            key: "driftwatch.source.topic",
            value: Some(msg.topic()),
        })
        .insert(Header {
            key: "driftwatch.source.partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "driftwatch.source.offset",
            value: Some(&offset),
        })
        .insert(Header {
            key: "driftwatch.error.kind",
            value: Some(kind),
        })
        .insert(Header {
            key: "driftwatch.error.message",
            value: Some(message),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::join::partition::input_index;

    fn letter(input: Input, partition: i32, offset: i64, model: &str) -> DeadLetter {
        DeadLetter {
            key: None,
            payload: None,
            headers: OwnedHeaders::new(),
            origin: (input_index(input), partition, offset),
            input,
            model: (model.to_string(), "v1".to_string()),
        }
    }

    fn waiting(r: &mut Rejections, d: DeadLetter) {
        count_rejected(r.uncommitted.entry(d.model.clone()).or_default(), d.input);
        r.letters.push(d);
    }

    #[test]
    fn a_dead_letter_waits_until_the_committed_offset_passes_its_record() {
        let mut r = Rejections::default();
        waiting(&mut r, letter(Input::Predictions, 0, 10, "a"));
        waiting(&mut r, letter(Input::Predictions, 0, 20, "a"));
        waiting(&mut r, letter(Input::Labels, 0, 5, "b"));
        waiting(&mut r, letter(Input::Labels, 1, 7, "b"));
        // The batch commits predictions[0] up to 15 (a record at 12 is still queued) and
        // labels[0] up to 5 (offset 5 itself not yet): only offset 10 is covered.
        let next = HashMap::from([((0, 0), 15), ((1, 0), 5)]);
        let (covered, counts, through) = r.take_covered(&next);
        assert_eq!(covered.len(), 1);
        assert_eq!(covered[0].origin, (0, 0, 10));
        let a = &counts[&("a".to_string(), "v1".to_string())];
        assert_eq!((a.predictions, a.dead_lettered), (1, 1));
        assert_eq!(through[&(0, 0)], 10);
        // The three others wait, still counted as not final.
        assert_eq!(r.letters.len(), 3);
        let open: u64 = r.uncommitted.values().map(|c| c.dead_lettered).sum();
        assert_eq!(open, 3);
        // Partition 1 leaves: its letter goes with it.
        r.forget_partitions(&std::collections::HashSet::from([1]));
        assert_eq!(r.letters.len(), 2);
        let open: u64 = r.uncommitted.values().map(|c| c.dead_lettered).sum();
        assert_eq!(open, 2);
        // A later batch covers the rest.
        let next = HashMap::from([((0, 0), 21), ((1, 0), 6)]);
        let (covered, _, _) = r.take_covered(&next);
        assert_eq!(covered.len(), 2);
        assert!(r.letters.is_empty() && r.uncommitted.is_empty());
    }
}
