//! Pairing of the two halves of one inference: a model server that logs the request (inputs)
//! and the response (outputs) of an inference as two messages with the same request id
//! (Seldon Core 2's `.inputs` / `.outputs` topics, KServe's logger events) needs them joined
//! into one prediction before the prediction/ground-truth join can see it.
//!
//! # The rule
//! A half waits for the other half of its id until the watermark passes its event time plus
//! `wait_ms`; the watermark is the largest event time offered so far (the halves come from one
//! partition, where the server writes them within milliseconds of each other, so no lateness
//! allowance beyond `wait_ms` is needed). Then:
//!
//! | what arrives                                   | outcome                                   |
//! |------------------------------------------------|-------------------------------------------|
//! | the other half of a waiting id                 | [`PairEvent::Paired`] (both halves)       |
//! | a half whose side already waits for this id    | [`PairEvent::Duplicate`]; the first wins  |
//! | any half of an id paired less than `wait_ms` ago | [`PairEvent::Duplicate`]                |
//! | a half already older than watermark − `wait_ms`, unmatched | [`PairEvent::Expired`] at once |
//! | nothing, until the watermark passes time + `wait_ms` | [`PairEvent::Expired`] (unpaired)    |
//!
//! Every half offered comes out in exactly one event, counted in [`PairingCounters`]; the
//! caller adds the halves it dead-lettered before offering (undecodable input) with
//! [`Pairing::count_dead_lettered`], so `halves_in = 2 × paired + expired + duplicates +
//! dead_lettered + pending` holds at every step (`tests::every_half_is_accounted_exactly_once`).
//!
//! # State
//! One entry per waiting id (the half itself, owned by the caller's type) plus one per id
//! paired within the last `wait_ms` (its event time only, to recognise a re-delivered half).
//! Expiry walks a deadline-ordered index, so an `offer` costs O(log n) and the order of expired
//! events is deterministic (deadline, then arrival). The size is bounded by the arrival rate
//! times `wait_ms`.

use std::collections::{BTreeMap, HashMap};

use crate::TimestampMs;

/// One half of an inference: `Q` a request's payload, `R` a response's.
#[derive(Debug, Clone, PartialEq)]
pub enum Half<Q, R> {
    Request(Q),
    Response(R),
}

impl<Q, R> Half<Q, R> {
    fn is_request(&self) -> bool {
        matches!(self, Half::Request(_))
    }
}

/// What became of offered halves.
#[derive(Debug, Clone, PartialEq)]
pub enum PairEvent<Q, R> {
    /// Both halves of `id`; `request_time` is the request's event time.
    Paired {
        id: String,
        request: Q,
        response: R,
        request_time: TimestampMs,
        response_time: TimestampMs,
    },
    /// A half that no other half joined within the wait.
    Expired {
        id: String,
        half: Half<Q, R>,
        time: TimestampMs,
    },
    /// A second request or response for an id (the first one stays).
    Duplicate {
        id: String,
        half: Half<Q, R>,
        time: TimestampMs,
    },
}

/// Counts of every half's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairingCounters {
    /// Halves offered plus halves dead-lettered by the caller.
    pub halves_in: u64,
    /// Pairs made (two halves each).
    pub paired: u64,
    pub expired: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
}

impl PairingCounters {
    /// Halves with an outcome so far; equals `halves_in` minus the halves still waiting.
    pub fn accounted(&self) -> u64 {
        2 * self.paired + self.expired + self.duplicates + self.dead_lettered
    }
}

#[derive(Debug)]
enum Slot<Q, R> {
    Waiting {
        half: Half<Q, R>,
        time: TimestampMs,
        seq: u64,
    },
    /// Paired at `time`; kept until its deadline to call a re-delivered half a duplicate.
    Done { seq: u64 },
}

impl<Q, R> Slot<Q, R> {
    fn seq(&self) -> u64 {
        match self {
            Slot::Waiting { seq, .. } | Slot::Done { seq } => *seq,
        }
    }
}

/// The pairing state of one input partition.
#[derive(Debug)]
pub struct Pairing<Q, R> {
    wait_ms: i64,
    slots: HashMap<String, Slot<Q, R>>,
    /// (deadline, seq) → id; an entry whose seq no longer matches its slot is stale.
    deadlines: BTreeMap<(TimestampMs, u64), String>,
    watermark: TimestampMs,
    next_seq: u64,
    counters: PairingCounters,
}

impl<Q, R> Pairing<Q, R> {
    /// A pairing in which a half waits `wait_ms` (> 0) of event time for its other half.
    pub fn new(wait_ms: i64) -> Self {
        Pairing {
            wait_ms: wait_ms.max(1),
            slots: HashMap::new(),
            deadlines: BTreeMap::new(),
            watermark: TimestampMs::MIN,
            next_seq: 0,
            counters: PairingCounters::default(),
        }
    }

    pub fn counters(&self) -> PairingCounters {
        self.counters
    }

    /// Halves waiting for their other half.
    pub fn pending(&self) -> usize {
        self.slots
            .values()
            .filter(|s| matches!(s, Slot::Waiting { .. }))
            .count()
    }

    /// The largest event time offered so far.
    pub fn watermark(&self) -> TimestampMs {
        self.watermark
    }

    /// Counts a half the caller could not decode (it never reaches [`Pairing::offer`]).
    pub fn count_dead_lettered(&mut self) {
        self.counters.halves_in += 1;
        self.counters.dead_lettered += 1;
    }

    /// Offers one half of `id` at event time `time`; returns what it and the watermark's
    /// advance decided, in order.
    pub fn offer(&mut self, id: &str, half: Half<Q, R>, time: TimestampMs) -> Vec<PairEvent<Q, R>> {
        self.counters.halves_in += 1;
        self.watermark = self.watermark.max(time);
        let mut out = Vec::new();
        let seq = self.next_seq;
        self.next_seq += 1;
        let deadline = time.saturating_add(self.wait_ms);
        match self.slots.remove(id) {
            Some(Slot::Waiting {
                half: waiting,
                time: waiting_time,
                seq: waiting_seq,
            }) if waiting.is_request() != half.is_request() => {
                let ((request, request_time), (response, response_time)) = match (waiting, half) {
                    (Half::Request(q), Half::Response(r)) => ((q, waiting_time), (r, time)),
                    (Half::Response(r), Half::Request(q)) => ((q, time), (r, waiting_time)),
                    _ => unreachable!("sides differ"),
                };
                self.counters.paired += 1;
                // The tombstone lives as long as the later half would have waited.
                let done_deadline = deadline.max(waiting_time.saturating_add(self.wait_ms));
                self.deadlines
                    .insert((done_deadline, waiting_seq), id.to_owned());
                self.slots
                    .insert(id.to_owned(), Slot::Done { seq: waiting_seq });
                out.push(PairEvent::Paired {
                    id: id.to_owned(),
                    request,
                    response,
                    request_time,
                    response_time,
                });
            }
            Some(slot) => {
                self.slots.insert(id.to_owned(), slot);
                self.counters.duplicates += 1;
                out.push(PairEvent::Duplicate {
                    id: id.to_owned(),
                    half,
                    time,
                });
            }
            None if deadline < self.watermark => {
                self.counters.expired += 1;
                out.push(PairEvent::Expired {
                    id: id.to_owned(),
                    half,
                    time,
                });
            }
            None => {
                self.slots
                    .insert(id.to_owned(), Slot::Waiting { half, time, seq });
                self.deadlines.insert((deadline, seq), id.to_owned());
            }
        }
        self.expire(self.watermark, &mut out);
        out
    }

    /// Moves the watermark to `watermark` (when later) as an offer at that event time would,
    /// and returns the halves that expire. A stage that rebuilds the state from the waiting
    /// halves alone (after a restart) restores the watermark with it, so the same halves
    /// expire at the same point as without the restart.
    pub fn advance(&mut self, watermark: TimestampMs) -> Vec<PairEvent<Q, R>> {
        self.watermark = self.watermark.max(watermark);
        let mut out = Vec::new();
        self.expire(self.watermark, &mut out);
        out
    }

    /// Expires every waiting half (end of input, or a partition handed away) and forgets the
    /// paired ids.
    pub fn drain(&mut self) -> Vec<PairEvent<Q, R>> {
        let mut out = Vec::new();
        self.expire(TimestampMs::MAX, &mut out);
        out
    }

    /// Removes every slot whose deadline is below `watermark`; waiting halves expire.
    fn expire(&mut self, watermark: TimestampMs, out: &mut Vec<PairEvent<Q, R>>) {
        while let Some(entry) = self.deadlines.first_entry() {
            let (deadline, seq) = *entry.key();
            if deadline >= watermark && watermark != TimestampMs::MAX {
                break;
            }
            let id = entry.remove();
            if self.slots.get(&id).map(Slot::seq) != Some(seq) {
                continue;
            }
            if let Some(Slot::Waiting { half, time, .. }) = self.slots.remove(&id) {
                self.counters.expired += 1;
                out.push(PairEvent::Expired { id, half, time });
            }
        }
    }
}

#[cfg(test)]
mod tests;
