//! A transaction whose offsets the coordinator refuses because the group membership it
//! carries is stale is committed again with the current membership, on the real broker under
//! the `consumer` group protocol (KIP-848).
//!
//! Under that protocol every assignment change moves the member epoch; a commit in flight at
//! that moment carries the old one and is refused. `eos::commit` aborts, then commits the same
//! batch in a new transaction with the current group metadata, instead of failing (which makes
//! a stage rewind and rebuild every task from its changelog).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use driftwatch_tests::{create_topic, settings, unique};
use driftwatch_worker::clients::{member_config, transactional_producer_config};
use driftwatch_worker::runtime::eos::{self, is_stale_membership};
use driftwatch_worker::runtime::Batch;
use driftwatch_worker::settings::GroupProtocol;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Three records for `topic` and the offsets of one input partition.
struct Records {
    topic: String,
    offsets: TopicPartitionList,
    /// How often the batch was produced.
    produced: u32,
}

impl Batch for Records {
    type Outcome = u32;

    fn offsets(&self) -> &TopicPartitionList {
        &self.offsets
    }

    fn produce<F>(&mut self, mut send: F) -> Result<(), KafkaError>
    where
        F: FnMut(FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError>,
    {
        self.produced += 1;
        for i in 0..3u8 {
            send(FutureRecord::to(&self.topic).payload(&[i][..]))?;
        }
        Ok(())
    }

    fn into_outcome(self) -> u32 {
        self.produced
    }
}

/// Polls `consumer` until its assignment has `n` partitions.
fn poll_until_assigned(consumer: &BaseConsumer, n: usize) {
    let started = Instant::now();
    while consumer.assignment().map(|a| a.count()).unwrap_or(0) != n {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no assignment of {n} partitions in 60 s"
        );
        let _ = consumer.poll(Duration::from_millis(100));
    }
}

fn member(group: &str, input: &str) -> BaseConsumer {
    let consumer: BaseConsumer = member_config(&settings(), group, GroupProtocol::Consumer)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    consumer
}

/// Payloads of `topic` a read-committed reader sees.
fn committed_records(topic: &str) -> usize {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", settings().bootstrap_servers)
        .set("group.id", unique("stale-reader"))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    reader.subscribe(&[topic]).expect("subscribe");
    let (mut n, started) = (0, Instant::now());
    while started.elapsed() < Duration::from_secs(30) {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.payload().is_some() => n += 1,
            Some(Err(KafkaError::PartitionEOF(_))) => return n,
            _ => {}
        }
    }
    panic!("no end of {topic} in 30 s ({n} records)");
}

#[test]
fn a_commit_refused_for_a_stale_membership_is_committed_again_with_the_current_one() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (input, output, group) = (unique("stale-in"), unique("stale-out"), unique("stale"));
    rt.block_on(create_topic(&input, 2));
    rt.block_on(create_topic(&output, 1));

    let first = member(&group, &input);
    poll_until_assigned(&first, 2);
    // Copies of the membership as it is now (rdkafka cannot clone one): a few for the refused
    // attempts, one for the attempt that is retried.
    let stale = Mutex::new(
        (0..8)
            .map(|_| first.group_metadata().expect("group metadata"))
            .collect::<Vec<ConsumerGroupMetadata>>(),
    );
    let stale_copy = || stale.lock().ok().and_then(|mut s| s.pop());
    // A second member takes one partition: the first member's epoch moves on.
    let second = member(&group, &input);
    let started = Instant::now();
    while first.assignment().map(|a| a.count()).unwrap_or(0) != 1
        || second.assignment().map(|a| a.count()).unwrap_or(0) != 1
    {
        assert!(started.elapsed() < Duration::from_secs(60), "no rebalance");
        let _ = first.poll(Duration::from_millis(50));
        let _ = second.poll(Duration::from_millis(50));
    }
    let kept = first.assignment().expect("assignment").elements()[0].partition();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, kept, Offset::Offset(7))
        .expect("offset");

    let producer: FutureProducer = transactional_producer_config(&settings(), &group)
        .create()
        .expect("producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init");
    producer.begin_transaction().expect("begin");

    // Only stale metadata: the coordinator refuses it each time, and the error says why.
    let asked = AtomicU32::new(0);
    let only_stale = || {
        asked.fetch_add(1, Ordering::Relaxed);
        stale_copy()
    };
    let mut batch = Records {
        topic: output.clone(),
        offsets: offsets.clone(),
        produced: 0,
    };
    let refused = eos::commit(
        &producer,
        "",
        &mut batch,
        &only_stale,
        Duration::from_secs(30),
    )
    .expect_err("stale metadata is refused");
    assert!(
        is_stale_membership(&refused),
        "a refusal for a stale membership is told apart: {refused:?}"
    );
    assert!(asked.load(Ordering::Relaxed) > 1, "it was retried");
    // The refused attempts left the producer usable: abort what is open and go on.
    producer
        .abort_transaction(Duration::from_secs(30))
        .expect("abort");
    producer.begin_transaction().expect("begin");

    // Stale first, then current: committed, once.
    let calls = AtomicU32::new(0);
    let stale_then_current = || {
        if calls.fetch_add(1, Ordering::Relaxed) == 0 {
            stale_copy()
        } else {
            first.group_metadata()
        }
    };
    let mut batch = Records {
        topic: output.clone(),
        offsets,
        produced: 0,
    };
    eos::commit(
        &producer,
        "",
        &mut batch,
        &stale_then_current,
        Duration::from_secs(30),
    )
    .expect("committed with the current membership");
    assert_eq!(batch.produced, 2, "produced once refused, once committed");
    assert_eq!(
        committed_records(&output),
        3,
        "only the committed attempt's records are read"
    );
    let committed = first
        .committed(Duration::from_secs(10))
        .expect("committed offsets");
    let offset = committed.find_partition(&input, kept).map(|e| e.offset());
    assert_eq!(offset, Some(Offset::Offset(7)));
}
