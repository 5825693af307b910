//! One source's whole path from records to predictions, without I/O: decode each record
//! ([`SourceConfig::decode`]), pair the halves by id (`driftwatch_core::pairing`), map each
//! pair ([`SourceMapping::predictions`](crate::SourceMapping::predictions)). A Kafka stage
//! wraps it: it hands records in with their timestamp and produces what comes out
//! (predictions keyed by request id to the predictions topic, dead letters with the reason).
//!
//! Accounting: every record offered is one half, and ends in exactly one of paired (two
//! halves per pair), expired unpaired, duplicate, dead-lettered (did not decode), or still
//! pending; a pair whose mapping fails (rows that differ, a missing tensor) is counted in
//! `unmapped_pairs` and comes out as a dead letter, so `pairs = mapped_pairs + unmapped_pairs`.
//! [`IntakeCounters::balanced`] states both laws.

use driftwatch_core::pairing::{Half, PairEvent, Pairing, PairingCounters};
use driftwatch_core::{Prediction, TimestampMs};

use crate::config::SourceConfig;
use crate::half::{HalfKind, InferenceHalf, Message};

/// What an offered record (or a drain) produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A canonical prediction, to be keyed by its `request_id`.
    Prediction(Prediction),
    /// A record that did not decode, or a pair that did not map: `reason` is the
    /// [`SourceError::kind`](crate::SourceError::kind), `id` the request id when known.
    DeadLetter {
        reason: &'static str,
        detail: String,
        id: Option<String>,
    },
    /// A half that no other half joined within `pair_wait`.
    Unpaired { id: String, kind: HalfKind },
    /// A second request or response for an id.
    Duplicate { id: String, kind: HalfKind },
}

/// How the set of waiting halves changed: what a stage that keeps the waiting halves
/// elsewhere (a changelog) needs to follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingChange {
    /// The half just offered waits for its other half under this id.
    Waiting(String),
    /// The half that waited under this id left: paired or expired.
    Left(String),
}

/// Counts of one source's intake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeCounters {
    pub pairing: PairingCounters,
    pub mapped_pairs: u64,
    pub unmapped_pairs: u64,
    pub predictions: u64,
}

impl IntakeCounters {
    /// Both accounting laws, given the halves still pending.
    pub fn balanced(&self, pending: usize) -> bool {
        let p = self.pairing;
        p.accounted() + pending as u64 == p.halves_in
            && p.paired == self.mapped_pairs + self.unmapped_pairs
    }
}

/// The decode → pair → map path of one source (one input partition's worth of state).
#[derive(Debug)]
pub struct SourceIntake {
    config: SourceConfig,
    pairing: Pairing<InferenceHalf, InferenceHalf>,
    mapped_pairs: u64,
    unmapped_pairs: u64,
    predictions: u64,
    changes: Vec<PendingChange>,
}

impl SourceIntake {
    /// An intake for a validated config.
    pub fn new(config: SourceConfig) -> Self {
        let wait = i64::try_from(config.pair_wait.as_millis()).unwrap_or(i64::MAX);
        SourceIntake {
            config,
            pairing: Pairing::new(wait),
            mapped_pairs: 0,
            unmapped_pairs: 0,
            predictions: 0,
            changes: Vec::new(),
        }
    }

    pub fn config(&self) -> &SourceConfig {
        &self.config
    }

    pub fn pending(&self) -> usize {
        self.pairing.pending()
    }

    pub fn counters(&self) -> IntakeCounters {
        IntakeCounters {
            pairing: self.pairing.counters(),
            mapped_pairs: self.mapped_pairs,
            unmapped_pairs: self.unmapped_pairs,
            predictions: self.predictions,
        }
    }

    /// Offers one record with its event time (the Kafka record timestamp).
    pub fn offer(&mut self, msg: &Message<'_>, time: TimestampMs) -> Vec<Output> {
        let half = match self.config.decode(msg) {
            Ok(h) => h,
            Err(e) => {
                self.pairing.count_dead_lettered();
                return vec![Output::DeadLetter {
                    reason: e.kind(),
                    detail: e.to_string(),
                    id: None,
                }];
            }
        };
        let id = half.id.clone();
        let half = match half.kind {
            HalfKind::Request => Half::Request(half),
            HalfKind::Response => Half::Response(half),
        };
        let events = self.pairing.offer(&id, half, time);
        // The offered half waits unless an event of its id says otherwise: paired (its
        // other half left), duplicate (the first stays) or expired at once (never waited).
        let mut waits = true;
        for e in &events {
            match e {
                PairEvent::Paired { id: i, .. } => {
                    waits &= *i != id;
                    self.changes.push(PendingChange::Left(i.clone()));
                }
                PairEvent::Expired { id: i, .. } if *i == id => waits = false,
                PairEvent::Expired { id: i, .. } => {
                    self.changes.push(PendingChange::Left(i.clone()))
                }
                PairEvent::Duplicate { id: i, .. } => waits &= *i != id,
            }
        }
        if waits {
            self.changes.push(PendingChange::Waiting(id));
        }
        self.outputs(events)
    }

    /// Moves the event-time watermark to `time` (when later); returns what expired. A stage
    /// that rebuilt the waiting halves calls it with the watermark it had.
    pub fn advance(&mut self, time: TimestampMs) -> Vec<Output> {
        let events = self.pairing.advance(time);
        self.note_left(&events);
        self.outputs(events)
    }

    /// The largest event time offered (or advanced to) so far.
    pub fn watermark(&self) -> TimestampMs {
        self.pairing.watermark()
    }

    /// Expires every pending half (end of input, partitions handed away).
    pub fn drain(&mut self) -> Vec<Output> {
        let events = self.pairing.drain();
        self.note_left(&events);
        self.outputs(events)
    }

    /// How the waiting halves changed since the last call, in order.
    pub fn take_changes(&mut self) -> Vec<PendingChange> {
        std::mem::take(&mut self.changes)
    }

    fn note_left(&mut self, events: &[PairEvent<InferenceHalf, InferenceHalf>]) {
        for e in events {
            if let PairEvent::Expired { id, .. } = e {
                self.changes.push(PendingChange::Left(id.clone()));
            }
        }
    }

    fn outputs(&mut self, events: Vec<PairEvent<InferenceHalf, InferenceHalf>>) -> Vec<Output> {
        let mut out = Vec::new();
        for e in events {
            match e {
                PairEvent::Paired {
                    id,
                    request,
                    response,
                    request_time,
                    ..
                } => match self
                    .config
                    .mapping
                    .predictions(&request, &response, request_time)
                {
                    Ok(ps) => {
                        self.mapped_pairs += 1;
                        self.predictions += ps.len() as u64;
                        out.extend(ps.into_iter().map(Output::Prediction));
                    }
                    Err(e) => {
                        self.unmapped_pairs += 1;
                        out.push(Output::DeadLetter {
                            reason: e.kind(),
                            detail: e.to_string(),
                            id: Some(id),
                        });
                    }
                },
                PairEvent::Expired { id, half, .. } => out.push(Output::Unpaired {
                    id,
                    kind: kind(&half),
                }),
                PairEvent::Duplicate { id, half, .. } => out.push(Output::Duplicate {
                    id,
                    kind: kind(&half),
                }),
            }
        }
        out
    }
}

fn kind(half: &Half<InferenceHalf, InferenceHalf>) -> HalfKind {
    match half {
        Half::Request(_) => HalfKind::Request,
        Half::Response(_) => HalfKind::Response,
    }
}
