//! Who holds a partition's open transaction: the writer header, and fencing a dead writer.
//!
//! # Why
//! A worker killed mid-transaction leaves its transaction open until the broker aborts it,
//! `transaction.timeout.ms` after it began plus up to the broker's abort sweep
//! (`transaction.abort.timed.out.transaction.cleanup.interval.ms`, 10 s by default). Until
//! then every `read_committed` reader of its partitions stops at the transaction's first
//! offset, and the next owner's restore waits there (BENCHMARKS.md, *Rescaling*, gives what
//! that cost a SIGKILL's take-over). Kafka aborts such a transaction at once when a producer
//! initializes with the same transactional id (which is how a restarted worker with a stable
//! `kafka.instance_id` fences its predecessor); the next owner only has to know that id.
//!
//! # How
//! Each transaction's first record in a partition that names its partition (changelogs,
//! progress markers) carries the header [`WRITER_HEADER`] = the producer's transactional id:
//! one header per partition per transaction. The first offset of the oldest open
//! transaction in a partition is its last stable offset, exactly where a `read_committed`
//! restore stops; a `read_uncommitted` read of that one record names the writer
//! ([`writer_at`]), and [`fence`] initializes a producer under its id.
//!
//! # When it is safe
//! Only the partition's owner writes to it, and an owner commits (or aborts) its open work
//! before it gives a partition up, under both group protocols. So a transaction still open in
//! a partition its new owner is restoring belongs to a worker that lost the partition without
//! giving it up: killed, or a zombie past its session. Fencing is what Kafka prescribes for
//! both. Restores that read partitions other workers still own (standbys, the retrain history)
//! never fence.
//!
//! # Offsets without records
//! A transaction can hold a partition's input offsets with none of its records in the
//! changelog yet: killed after `send_offsets_to_transaction` and before its records reached
//! the broker, or a batch that changed no state of that partition. The new owner's restore
//! then reads to the end, but the group's committed offsets stay pending (a `read_committed`
//! consumer asks for stable ones) until the broker aborts the transaction. The owner that
//! died is, as a rule, the partition's last writer: its last committed transaction there is
//! named ([`last_writer`]), and the stage fences it. When the dead owner never committed to
//! that partition, the writer fenced is its previous owner, alive elsewhere: it loses its open
//! transaction and goes on with a new producer, and the wait is the broker's, as before.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers};
use rdkafka::producer::{BaseProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::changelog::RestoreContext;
use crate::error::{Result, WorkerError};

/// The header naming the transactional id of the transaction a record belongs to.
pub const WRITER_HEADER: &str = "driftwatch.writer";

/// Tags the first record of each named partition in one transaction (one attempt: a retried
/// commit is a new transaction and tags again).
pub struct Tagger<'a> {
    writer: &'a str,
    seen: HashSet<(String, i32)>,
}

impl<'a> Tagger<'a> {
    /// Tags with `writer`; an empty `writer` tags nothing (no transactions).
    pub fn new(writer: &'a str) -> Self {
        Tagger {
            writer,
            seen: HashSet::new(),
        }
    }

    /// `record`, with the writer header added when it is the transaction's first record in
    /// its (named) partition.
    pub fn tag<'r>(
        &mut self,
        mut record: FutureRecord<'r, [u8], [u8]>,
    ) -> FutureRecord<'r, [u8], [u8]> {
        let Some(partition) = record.partition else {
            return record;
        };
        if self.writer.is_empty() || !self.seen.insert((record.topic.to_owned(), partition)) {
            return record;
        }
        let headers = record.headers.take().unwrap_or_default();
        record.headers = Some(headers.insert(Header {
            key: WRITER_HEADER,
            value: Some(self.writer),
        }));
        record
    }
}

/// The writer named by the record at `offset` of `topic`[`partition`], read uncommitted with
/// the connection settings of `config` (a consumer's); `None` when that record carries no
/// writer header (written before the header existed) or none comes within `timeout`.
pub fn writer_at(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    timeout: Duration,
) -> Result<Option<String>> {
    let consumer: BaseConsumer = config
        .clone()
        .set("isolation.level", "read_uncommitted")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if m.offset() >= offset => return Ok(writer_of(&m)),
            Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// The writer named by `m`'s header, if any.
fn writer_of(m: &BorrowedMessage<'_>) -> Option<String> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|h| h.key == WRITER_HEADER)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    })
}

/// The writer of the last transaction committed to `topic`[`partition`] (the last writer
/// header below its last stable offset), read committed with the connection settings of
/// `config`, backwards in windows of records that grow eightfold; `None` when no committed
/// record names one or `timeout` passes first.
pub fn last_writer(
    config: &ClientConfig,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Option<String>> {
    let consumer: BaseConsumer<RestoreContext> = config
        .clone()
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "10")
        .create_with_context(RestoreContext)?;
    let deadline = Instant::now() + timeout;
    let (low, stable) = consumer.fetch_watermarks(topic, partition, timeout)?;
    let mut upto = stable;
    let mut window = 1024i64;
    while upto > low {
        let from = upto.saturating_sub(window).max(low);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
        consumer.assign(&tpl)?;
        let mut last = None;
        loop {
            if Instant::now() >= deadline {
                return Ok(None);
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) if m.offset() >= upto => break,
                Some(Ok(m)) => {
                    if let Some(w) = writer_of(&m) {
                        last = Some(w);
                    }
                    if m.offset() + 1 >= upto {
                        break;
                    }
                }
                // The last stable offset: nothing committed beyond it to read.
                Some(Err(KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
        if last.is_some() {
            return Ok(last);
        }
        upto = from;
        window = window.saturating_mul(8);
    }
    Ok(None)
}

/// Fences `writer`: initializes a producer under its transactional id (with the connection
/// settings of `producer_config`), which makes the coordinator abort that id's open
/// transaction and refuse its older incarnation from then on.
pub fn fence(producer_config: &ClientConfig, writer: &str, timeout: Duration) -> Result<()> {
    let producer: BaseProducer = producer_config
        .clone()
        .set("transactional.id", writer)
        .create()?;
    producer
        .init_transactions(timeout)
        .map_err(WorkerError::from)
}

/// Fences the writers of transactions left open in a stage's changelog, for its restores.
#[derive(Clone)]
pub struct Fencer {
    /// The stage's transactional producer configuration (connection settings, own id).
    producer_config: ClientConfig,
    /// Connection settings for the one-record uncommitted read.
    consumer_config: ClientConfig,
}

impl Fencer {
    /// For a stage whose transactional producer is configured by `producer_config`, reading
    /// with `consumer_config`.
    pub fn new(producer_config: ClientConfig, consumer_config: ClientConfig) -> Self {
        Fencer {
            producer_config,
            consumer_config,
        }
    }

    /// The stage's own transactional id (never fenced by it).
    fn own(&self) -> Option<&str> {
        self.producer_config.get("transactional.id")
    }

    /// The writer of the open transaction that starts at `offset` of `topic`[`partition`];
    /// `None` when the record there names no writer, or names this stage.
    pub fn open_writer(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<Option<String>> {
        let writer = writer_at(&self.consumer_config, topic, partition, offset, timeout)?;
        Ok(writer.filter(|w| Some(w.as_str()) != self.own()))
    }

    /// The writer of the last transaction committed to `topic`[`partition`]
    /// ([`last_writer`]); `None` when none is named, or it is this stage.
    pub fn last_writer(
        &self,
        topic: &str,
        partition: i32,
        timeout: Duration,
    ) -> Result<Option<String>> {
        let writer = last_writer(&self.consumer_config, topic, partition, timeout)?;
        Ok(writer.filter(|w| Some(w.as_str()) != self.own()))
    }

    /// Fences `writer` ([`fence`]).
    pub fn fence(&self, writer: &str, timeout: Duration) -> Result<()> {
        fence(&self.producer_config, writer, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::OwnedHeaders;

    fn writer_of(record: &FutureRecord<'_, [u8], [u8]>) -> Option<String> {
        record.headers.as_ref().and_then(|h| {
            h.iter()
                .find(|h| h.key == WRITER_HEADER)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        })
    }

    #[test]
    fn only_the_first_record_of_each_named_partition_is_tagged() {
        let mut t = Tagger::new("g-w1");
        let a0 = t.tag(FutureRecord::to("a").partition(0));
        let a0_again = t.tag(FutureRecord::to("a").partition(0));
        let a1 = t.tag(FutureRecord::to("a").partition(1));
        let b0 = t.tag(FutureRecord::to("b").partition(0));
        let unnamed = t.tag(FutureRecord::to("a"));
        assert_eq!(writer_of(&a0).as_deref(), Some("g-w1"));
        assert_eq!(writer_of(&a0_again), None);
        assert_eq!(writer_of(&a1).as_deref(), Some("g-w1"));
        assert_eq!(writer_of(&b0).as_deref(), Some("g-w1"));
        assert_eq!(writer_of(&unnamed), None);
    }

    #[test]
    fn existing_headers_are_kept() {
        let mut t = Tagger::new("g-w1");
        let r = t.tag(
            FutureRecord::to("a")
                .partition(0)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "k",
                    value: Some("v"),
                })),
        );
        let h = r.headers.as_ref().expect("headers");
        assert_eq!(h.count(), 2);
        assert_eq!(h.get(0).key, "k");
    }

    #[test]
    fn an_empty_writer_tags_nothing() {
        let mut t = Tagger::new("");
        assert_eq!(writer_of(&t.tag(FutureRecord::to("a").partition(0))), None);
    }
}
