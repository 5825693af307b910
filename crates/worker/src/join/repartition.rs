//! `join.misrouted = "repartition"`: a misrouted input record is not joined where it was read;
//! it is re-published to the repartition topic on its key's murmur2 partition, and the copy is
//! what the join takes in, as a third input of the same partition *i*.
//!
//! | step | where | what holds |
//! |---|---|---|
//! | read `predictions[j]` / `ground-truth[j]`, key's murmur2 partition is *i* ≠ *j* | [`super::intake`] | counted misrouted and `repartitioned`; not decoded, not queued; `next_offset` of that input moves past it |
//! | staged ([`Repartition::stage`]) | the loop | key and payload as read, headers: `driftwatch.repartition.topic` (the input), `.partition`, `.offset` |
//! | the batch | [`super::batch`] | produced first, in the transaction that also commits the offset past the original |
//! | read `repartition[i]` | [`super::intake`] | decoded, validated, dead-lettered or queued as the header's input, like a direct record |
//!
//! Exactly once: the copy and the original's offset commit together (an abort drops both, the
//! original is read again and re-staged), so every input is joined once, as its copy. The
//! original is counted only in the routing tally (`misrouted`, `repartitioned`), never in the
//! join's outcomes; dead letters and the changelog see only the copy. Repartition-topic
//! offsets are committed like the inputs' (oldest copy still queued), so a restore reads the
//! copies not yet in the state again.
//!
//! Watermark: the repartition partition is an input like the others for "caught up", so an
//! empty one does not hold the watermark (the idle rules apply unchanged). A copy this worker
//! re-published to partition *i* is waited for: partition *i*'s inputs do not count as caught
//! up while such a copy is staged or in an open transaction, nor for [`SETTLE`] after its
//! commit (the statistics' last stable offset lags by up to one interval). A copy re-published
//! by another worker arrives as any late record does: within `join.allowed_lateness` it joins.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use driftwatch_core::join::Input;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::Message;

/// The header naming the input a re-published record was read from.
pub(super) const INPUT_HEADER: &str = "driftwatch.repartition.topic";

/// How long a partition's inputs stay "not caught up" after copies re-published to it were
/// committed: two statistics intervals, so the last stable offset seen includes them.
pub(super) const SETTLE: Duration = Duration::from_millis(1_500);

/// One re-published record, for the next batch.
pub(crate) struct Republished {
    partition: i32,
    key: Vec<u8>,
    payload: Option<Vec<u8>>,
    headers: OwnedHeaders,
}

impl Republished {
    pub(super) fn future<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, [u8], [u8]> {
        let mut r = FutureRecord::to(topic)
            .partition(self.partition)
            .key(self.key.as_slice())
            .headers(self.headers.clone());
        if let Some(p) = &self.payload {
            r = r.payload(p.as_slice());
        }
        r
    }
}

/// The re-publishing state, owned by the join's loop.
pub(super) struct Repartition {
    pub(super) topic: String,
    staged: Vec<Republished>,
    /// Copies per target partition staged or in an open transaction.
    in_flight: HashMap<i32, usize>,
    /// Per target partition, until when its inputs are held "not caught up".
    settle_until: HashMap<i32, Instant>,
}

impl Repartition {
    pub(super) fn new(topic: String) -> Self {
        Repartition {
            topic,
            staged: Vec::new(),
            in_flight: HashMap::new(),
            settle_until: HashMap::new(),
        }
    }

    /// Stages `msg` (a keyed input record) for partition `to`.
    pub(super) fn stage(&mut self, msg: &BorrowedMessage<'_>, to: i32) {
        let Some(key) = msg.key() else {
            return; // unkeyed records are never misrouted
        };
        let (partition, offset) = (msg.partition().to_string(), msg.offset().to_string());
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: INPUT_HEADER,
                value: Some(msg.topic()),
            })
            .insert(Header {
                key: "driftwatch.repartition.partition",
                value: Some(&partition),
            })
            .insert(Header {
                key: "driftwatch.repartition.offset",
                value: Some(&offset),
            });
        self.staged.push(Republished {
            partition: to,
            key: key.to_vec(),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers,
        });
        *self.in_flight.entry(to).or_default() += 1;
    }

    /// The staged copies, for a batch, with their count per target partition.
    pub(super) fn take(&mut self) -> (Vec<Republished>, Vec<(i32, usize)>) {
        let staged = std::mem::take(&mut self.staged);
        let mut per: HashMap<i32, usize> = HashMap::new();
        for r in &staged {
            *per.entry(r.partition).or_default() += 1;
        }
        (staged, per.into_iter().collect())
    }

    /// A batch holding `per` copies per partition committed: they are readable now.
    pub(super) fn committed(&mut self, per: &[(i32, usize)], now: Instant) {
        for &(p, n) in per {
            if let Some(c) = self.in_flight.get_mut(&p) {
                *c = c.saturating_sub(n);
            }
            self.settle_until.insert(p, now + SETTLE);
        }
        self.in_flight.retain(|_, c| *c > 0);
    }

    /// The open transaction aborted: nothing staged or in flight remains (the originals are
    /// read again and staged again).
    pub(super) fn aborted(&mut self) {
        self.staged.clear();
        self.in_flight.clear();
    }

    /// Whether every copy this worker re-published to `partition` can be in the last stable
    /// offset the statistics report.
    pub(super) fn settled(&self, partition: i32, now: Instant) -> bool {
        !self.in_flight.contains_key(&partition)
            && self.settle_until.get(&partition).is_none_or(|t| now >= *t)
    }
}

/// The input a record of the repartition topic was read from, by its header (`None`: not a
/// re-published record, or an input this stage does not read).
pub(super) fn original_input(
    msg: &BorrowedMessage<'_>,
    predictions: &str,
    ground_truth: &str,
) -> Option<Input> {
    let headers = msg.headers()?;
    let h = headers.iter().find(|h| h.key == INPUT_HEADER)?;
    match h.value? {
        v if v == predictions.as_bytes() => Some(Input::Predictions),
        v if v == ground_truth.as_bytes() => Some(Input::Labels),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(partition: i32) -> Republished {
        Republished {
            partition,
            key: b"k".to_vec(),
            payload: None,
            headers: OwnedHeaders::new(),
        }
    }

    #[test]
    fn a_partition_settles_only_after_its_copies_committed_and_the_settle_time_passed() {
        let mut r = Repartition::new("r".into());
        let t0 = Instant::now();
        assert!(r.settled(1, t0), "nothing re-published");
        r.staged.push(copy(1));
        r.staged.push(copy(1));
        r.staged.push(copy(2));
        r.in_flight.insert(1, 2);
        r.in_flight.insert(2, 1);
        let (taken, mut per) = r.take();
        per.sort_unstable();
        assert_eq!((taken.len(), per.clone()), (3, vec![(1, 2), (2, 1)]));
        assert!(!r.settled(1, t0) && !r.settled(2, t0) && r.settled(0, t0));
        r.committed(&per, t0);
        assert!(!r.settled(1, t0), "the statistics may not show them yet");
        assert!(r.settled(1, t0 + SETTLE) && r.settled(2, t0 + SETTLE));
    }

    #[test]
    fn an_abort_forgets_what_was_staged_and_in_flight() {
        let mut r = Repartition::new("r".into());
        r.staged.push(copy(3));
        r.in_flight.insert(3, 1);
        r.aborted();
        assert!(r.take().0.is_empty());
        assert!(r.settled(3, Instant::now()));
    }
}
