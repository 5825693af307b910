//! What the sources stage writes, and the batch one commit carries it in: predictions (Avro
//! `Prediction` datums keyed by request id, placed by the producer's murmur2 partitioner like
//! every producer of the predictions topic), dead letters, and (exactly-once) the changelog
//! records of the waiting halves ([`super::pending`]).
//!
//! Dead letters carry the join's headers (`driftwatch.source.topic`, `.partition`, `.offset`,
//! `driftwatch.error.kind`, `driftwatch.error.message`) plus `driftwatch.source.name`, the
//! `[[sources]]` entry. The record that did not decode is copied (key, payload); a pair that
//! did not map is written under its request id, with the origin of the half that completed it
//! and no payload.

use driftwatch_oip::IntakeCounters;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::{Message, TopicPartitionList};

use crate::join::dead_letter_headers;
use crate::runtime::Batch;

/// One record to write.
pub(crate) struct OutRecord {
    pub(super) topic: String,
    pub(super) key: Vec<u8>,
    /// `None`: a tombstone (changelog only) or a dead letter without payload.
    pub(super) payload: Option<Vec<u8>>,
    pub(super) headers: Option<OwnedHeaders>,
    /// The changelog's one partition; `None`: the partitioner places it by key.
    pub(super) partition: Option<i32>,
}

/// A dead letter for a record of `msg`'s origin.
pub(super) fn dead_letter(
    topic: &str,
    source: &str,
    msg: &BorrowedMessage<'_>,
    kind: &str,
    message: &str,
    id: Option<&str>,
) -> OutRecord {
    let headers = dead_letter_headers(msg, kind, message).insert(Header {
        key: "driftwatch.source.name",
        value: Some(source),
    });
    let (key, payload) = match id {
        // A pair that did not map: two records are behind it; the id names both.
        Some(id) => (id.as_bytes().to_vec(), None),
        None => (
            msg.key().map(<[u8]>::to_vec).unwrap_or_default(),
            msg.payload().map(<[u8]>::to_vec),
        ),
    };
    OutRecord {
        topic: topic.to_owned(),
        key,
        payload,
        headers: Some(headers),
        partition: None,
    }
}

/// What one commit carries: the records of the work since the last batch, the next offset of
/// every source partition read, and each source's counts over that work.
pub(crate) struct SourcesBatch {
    pub(super) records: Vec<OutRecord>,
    pub(super) offsets: TopicPartitionList,
    /// Per source (config order), what its intake counted since the last batch.
    pub(super) counts: Vec<IntakeCounters>,
}

impl Batch for SourcesBatch {
    /// The counts, final once the batch committed.
    type Outcome = Vec<IntakeCounters>;

    fn offsets(&self) -> &TopicPartitionList {
        &self.offsets
    }

    fn produce<F>(&mut self, mut send: F) -> Result<(), KafkaError>
    where
        F: FnMut(FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError>,
    {
        for r in &self.records {
            let mut record = FutureRecord::to(&r.topic).key(r.key.as_slice());
            if let Some(p) = &r.payload {
                record = record.payload(p.as_slice());
            }
            if let Some(h) = &r.headers {
                record = record.headers(h.clone());
            }
            if let Some(p) = r.partition {
                record = record.partition(p);
            }
            send(record)?;
        }
        Ok(())
    }

    fn into_outcome(self) -> Vec<IntakeCounters> {
        self.counts
    }
}

/// `a - b`, field by field (`b` an earlier reading of the same intake).
pub(super) fn since(a: &IntakeCounters, b: &IntakeCounters) -> IntakeCounters {
    let (p, q) = (a.pairing, b.pairing);
    let mut d = IntakeCounters::default();
    d.pairing.halves_in = p.halves_in.saturating_sub(q.halves_in);
    d.pairing.paired = p.paired.saturating_sub(q.paired);
    d.pairing.expired = p.expired.saturating_sub(q.expired);
    d.pairing.duplicates = p.duplicates.saturating_sub(q.duplicates);
    d.pairing.dead_lettered = p.dead_lettered.saturating_sub(q.dead_lettered);
    d.mapped_pairs = a.mapped_pairs.saturating_sub(b.mapped_pairs);
    d.unmapped_pairs = a.unmapped_pairs.saturating_sub(b.unmapped_pairs);
    d.predictions = a.predictions.saturating_sub(b.predictions);
    d
}

/// `a + b`, field by field.
pub(super) fn plus(a: &IntakeCounters, b: &IntakeCounters) -> IntakeCounters {
    let (p, q) = (a.pairing, b.pairing);
    let mut s = IntakeCounters::default();
    s.pairing.halves_in = p.halves_in + q.halves_in;
    s.pairing.paired = p.paired + q.paired;
    s.pairing.expired = p.expired + q.expired;
    s.pairing.duplicates = p.duplicates + q.duplicates;
    s.pairing.dead_lettered = p.dead_lettered + q.dead_lettered;
    s.mapped_pairs = a.mapped_pairs + b.mapped_pairs;
    s.unmapped_pairs = a.unmapped_pairs + b.unmapped_pairs;
    s.predictions = a.predictions + b.predictions;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_since_a_reading_add_back_up() {
        let mut a = IntakeCounters::default();
        a.pairing.halves_in = 10;
        a.pairing.paired = 3;
        a.mapped_pairs = 2;
        a.unmapped_pairs = 1;
        a.predictions = 4;
        let mut b = a;
        b.pairing.halves_in = 4;
        b.pairing.paired = 1;
        b.predictions = 1;
        let d = since(&a, &b);
        assert_eq!(
            (d.pairing.halves_in, d.pairing.paired, d.predictions),
            (6, 2, 3)
        );
        assert_eq!(plus(&b, &d), a);
    }
}
