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
//! oldest record still queued in a task, so after a rewind a rejected record behind one may be
//! read again: [`Rejections`] remembers, per input partition, the highest rejected offset a
//! committed transaction holds, and such a record is neither counted nor dead-lettered twice.

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
pub(super) type RejectedThrough = HashMap<(Input, i32), i64>;

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
}

/// The counts of rejected input and the dead letters not yet in a batch.
#[derive(Default)]
pub(super) struct Rejections {
    /// Final counts, per model.
    counted: PerModel,
    /// Exactly-once: the open transaction's counts, folded into `counted` when it commits.
    uncommitted: PerModel,
    /// Exactly-once: per input partition, the highest rejected offset a committed transaction
    /// holds.
    through: RejectedThrough,
    /// The same for the open transaction.
    through_uncommitted: RejectedThrough,
    /// Dead letters for the next batch.
    pub(super) letters: Vec<DeadLetter>,
}

impl Rejections {
    /// Every count, final or not.
    pub(super) fn counted(&self) -> impl Iterator<Item = (&(String, String), &JoinCounters)> {
        self.counted.iter().chain(&self.uncommitted)
    }

    /// The open transaction's counts and high offsets, for its batch.
    pub(super) fn take_uncommitted(&mut self) -> (PerModel, RejectedThrough) {
        (
            std::mem::take(&mut self.uncommitted),
            std::mem::take(&mut self.through_uncommitted),
        )
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

    /// The open transaction aborted: its counts and dead letters are dropped.
    pub(super) fn forget_uncommitted(&mut self) {
        self.uncommitted.clear();
        self.through_uncommitted.clear();
        self.letters.clear();
    }
}

impl Join {
    /// Counts a rejected record and keeps its dead letter for the next batch.
    pub(super) fn dead_letter(&mut self, msg: &BorrowedMessage<'_>, input: Input, reject: Reject) {
        let r = &mut self.rejections;
        if self.exactly_once {
            let at = (input, msg.partition());
            if r.through.get(&at).is_some_and(|&o| msg.offset() <= o) {
                // Read again after a rewind: counted and dead-lettered by a committed
                // transaction already.
                return;
            }
            let e = r.through_uncommitted.entry(at).or_insert(msg.offset());
            *e = (*e).max(msg.offset());
        }
        let counts = if self.exactly_once {
            &mut r.uncommitted
        } else {
            &mut r.counted
        };
        let c = counts.entry(reject.model).or_default();
        match input {
            Input::Predictions => c.predictions += 1,
            Input::Labels => c.labels += 1,
        }
        c.dead_lettered += 1;
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
        let partition = msg.partition().to_string();
        let offset = msg.offset().to_string();
        let headers = OwnedHeaders::new()
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
                value: Some(reject.kind),
            })
            .insert(Header {
                key: "driftwatch.error.message",
                value: Some(&reject.message),
            });
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
        });
        *self
            .meters
            .events_out
            .entry(self.topics.dead_letter.clone())
            .or_default() += 1;
    }
}
