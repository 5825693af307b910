//! Input records (`Prediction`, `GroundTruth`) from a Kafka topic, for `backtest`'s
//! `topic:NAME` sources.
//!
//! Every partition is read from the first record whose Kafka timestamp is at or after the
//! start asked for (Kafka's time index, `offsets_for_times`; the earliest record without one)
//! up to the end it had when the reader opened (read committed, so only committed
//! transactional records), then the partitions are merged by event time into one stream, as
//! one join task would take them in. The caller filters by event time as it does for files;
//! the seek is only a shortcut, so it starts [`SEEK_MARGIN_MS`] early: producers stamp records
//! when they send them, a little after the event.
//!
//! Nothing is committed and no group is joined: partitions are assigned, so a backtest never
//! moves a running group's offsets. Memory stays bounded: a partition whose buffer holds
//! [`MAX_BUFFERED`] records is paused until the merge has taken them.
//!
//! A record that does not decode is counted and skipped, as for files; the join stage would
//! dead-letter it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::records::InputRecord;

/// How much earlier than the start asked for each partition is read.
pub const SEEK_MARGIN_MS: i64 = 3_600_000;
/// Records buffered per partition before it is paused.
const MAX_BUFFERED: usize = 10_000;
/// A partition that yields nothing for this long before its end is an error.
const STALL: Duration = Duration::from_secs(30);

struct Partition<T> {
    id: i32,
    /// Offset to read next, and the end taken at open.
    next: i64,
    end: i64,
    buffer: VecDeque<T>,
    paused: bool,
}

impl<T> Partition<T> {
    fn done_reading(&self) -> bool {
        self.next >= self.end
    }
}

/// The records of one topic, merged by event time. See the module docs.
pub struct TopicReader<T: InputRecord> {
    topic: String,
    consumer: BaseConsumer,
    partitions: Vec<Partition<T>>,
    /// (event time, partition index) of every partition's buffered head, smallest first.
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    /// Partitions with nothing buffered that may still have records: the merge waits for them.
    waiting: usize,
    /// Records that did not decode, and the first such error.
    pub undecodable: u64,
    pub first_error: Option<String>,
    /// An error that ended the read early.
    pub failed: Option<String>,
}

impl<T: InputRecord> TopicReader<T> {
    /// Opens `topic` with `config` (a consumer configuration, group id unused) from event time
    /// `from` on (all of it with `None`).
    pub fn open(
        config: &rdkafka::ClientConfig,
        topic: &str,
        from: Option<i64>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let consumer: BaseConsumer = config
            .clone()
            // The end of a partition whose last offset is a transaction marker is only told
            // by an end-of-partition event: no record reaches the end offset.
            .set("enable.partition.eof", "true")
            .create()?;
        let metadata = consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| anyhow::anyhow!("topic:{topic}: cannot read its metadata: {e}"))?;
        let ids: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            anyhow::bail!("topic:{topic}: no such topic (or it has no partitions)");
        }
        let mut starts = TopicPartitionList::new();
        for id in &ids {
            let at = match from {
                Some(ms) => Offset::Offset(ms.saturating_sub(SEEK_MARGIN_MS).max(0)),
                None => Offset::Beginning,
            };
            starts.add_partition_offset(topic, *id, at)?;
        }
        if from.is_some() {
            starts = consumer.offsets_for_times(starts, timeout)?;
        }
        let mut partitions = Vec::new();
        let mut assignment = TopicPartitionList::new();
        for id in ids {
            let (low, high) = consumer
                .fetch_watermarks(topic, id, timeout)
                .map_err(|e| anyhow::anyhow!("topic:{topic}: partition {id}'s offsets: {e}"))?;
            let next = match starts.find_partition(topic, id).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(low),
                // No record at or after the start: nothing to read.
                Some(Offset::End) => high,
                _ => low,
            };
            assignment.add_partition_offset(topic, id, Offset::Offset(next))?;
            partitions.push(Partition {
                id,
                next,
                end: high,
                buffer: VecDeque::new(),
                paused: false,
            });
        }
        consumer.assign(&assignment)?;
        let waiting = partitions.iter().filter(|p| !p.done_reading()).count();
        Ok(TopicReader {
            topic: topic.to_owned(),
            consumer,
            partitions,
            heads: BinaryHeap::new(),
            waiting,
            undecodable: 0,
            first_error: None,
            failed: None,
        })
    }

    /// Reads until every partition that may still have records has one buffered.
    fn fill(&mut self) -> Result<(), String> {
        let mut last_progress = Instant::now();
        while self.waiting > 0 {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {
                    if last_progress.elapsed() > STALL {
                        let stuck: Vec<String> = self
                            .partitions
                            .iter()
                            .filter(|p| p.buffer.is_empty() && !p.done_reading())
                            .map(|p| format!("{} (at {} of {})", p.id, p.next, p.end))
                            .collect();
                        return Err(format!(
                            "topic:{}: no record for {} s from partition(s) {} before their end",
                            self.topic,
                            STALL.as_secs(),
                            stuck.join(", ")
                        ));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(id))) => {
                    if let Some(p) = self.partitions.iter_mut().find(|p| p.id == id) {
                        if !p.done_reading() {
                            p.next = p.end;
                            if p.buffer.is_empty() {
                                self.waiting -= 1;
                            }
                        }
                    }
                }
                Some(Err(e)) => return Err(format!("topic:{}: {e}", self.topic)),
                Some(Ok(msg)) => {
                    last_progress = Instant::now();
                    let Some(i) = self.partitions.iter().position(|p| p.id == msg.partition())
                    else {
                        continue;
                    };
                    let decoded = T::from_payload(msg.payload().unwrap_or_default());
                    let offset = msg.offset();
                    drop(msg);
                    let p = &mut self.partitions[i];
                    if offset < p.next || p.done_reading() {
                        continue;
                    }
                    let was_waiting = p.buffer.is_empty();
                    p.next = offset + 1;
                    match decoded {
                        Ok(record) => {
                            if was_waiting {
                                self.heads.push(Reverse((record.event_time(), i)));
                            }
                            p.buffer.push_back(record);
                        }
                        Err(e) => {
                            self.undecodable += 1;
                            if self.first_error.is_none() {
                                self.first_error = Some(format!(
                                    "topic:{} partition {} offset {offset}: {e}",
                                    self.topic, p.id
                                ));
                            }
                        }
                    }
                    let p = &self.partitions[i];
                    // Waiting for this partition ends with a record, or with its end.
                    if was_waiting && (!p.buffer.is_empty() || p.done_reading()) {
                        self.waiting -= 1;
                    }
                    if p.buffer.len() >= MAX_BUFFERED && !p.paused {
                        self.pause(i, true)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pause(&mut self, i: usize, pause: bool) -> Result<(), String> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partitions[i].id);
        let r = if pause {
            self.consumer.pause(&tpl)
        } else {
            self.consumer.resume(&tpl)
        };
        r.map_err(|e| format!("topic:{}: {e}", self.topic))?;
        self.partitions[i].paused = pause;
        Ok(())
    }

    fn take_next(&mut self) -> Result<Option<T>, String> {
        self.fill()?;
        let Some(Reverse((_, i))) = self.heads.pop() else {
            return Ok(None);
        };
        let p = &mut self.partitions[i];
        let record = p.buffer.pop_front();
        match p.buffer.front() {
            Some(next) => self.heads.push(Reverse((next.event_time(), i))),
            None if !p.done_reading() => self.waiting += 1,
            None => {}
        }
        if p.paused && p.buffer.len() <= MAX_BUFFERED / 2 {
            self.pause(i, false)?;
        }
        Ok(record)
    }
}

impl<T: InputRecord> Iterator for TopicReader<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.failed.is_some() {
            return None;
        }
        match self.take_next() {
            Ok(r) => r,
            Err(e) => {
                self.failed = Some(e);
                None
            }
        }
    }
}
