//! A transaction left open by a writer that died is fenced by the next owner's restore, on
//! the real broker, instead of being waited for until the broker times it out.
//!
//! A worker SIGKILLed mid-commit leaves its changelog records in an open transaction; a
//! `read_committed` restore stops at its first offset until the broker aborts it
//! (`transaction.timeout.ms` plus the broker's abort sweep). Each transaction's first record
//! per partition names its writer (`driftwatch.writer`), and a restore of partitions its stage
//! owns fences that writer after a short wait, which aborts the transaction at once.

use std::mem::ManuallyDrop;
use std::time::{Duration, Instant};

use driftwatch_tests::{create_topic, init_logging, settings, unique};
use driftwatch_worker::changelog::ChangelogReader;
use driftwatch_worker::clients::transactional_producer_config;
use driftwatch_worker::runtime::eos;
use driftwatch_worker::runtime::transaction::send_waiting;
use driftwatch_worker::runtime::writer::{Tagger, WRITER_HEADER};
use driftwatch_worker::runtime::Batch;
use driftwatch_worker::settings::{KafkaSettings, Settings};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, TopicPartitionList};

/// `n` records for partition 0 of `topic`, no input offsets.
struct Records {
    topic: String,
    n: u8,
    offsets: TopicPartitionList,
}

impl Batch for Records {
    type Outcome = ();

    fn offsets(&self) -> &TopicPartitionList {
        &self.offsets
    }

    fn produce<F>(&mut self, mut send: F) -> Result<(), KafkaError>
    where
        F: FnMut(FutureRecord<'_, [u8], [u8]>) -> Result<(), KafkaError>,
    {
        for i in 0..self.n {
            send(
                FutureRecord::to(&self.topic)
                    .partition(0)
                    .key(&[i][..])
                    .payload(&[i][..]),
            )?;
        }
        Ok(())
    }

    fn into_outcome(self) {}
}

/// A transactional producer of `group` (its transactional id is `<group>-<instance>`), with
/// a transaction timeout far beyond the test's waits.
fn producer(kafka: &KafkaSettings, group: &str) -> (FutureProducer, String) {
    let config = transactional_producer_config(kafka, group);
    let id = config
        .get("transactional.id")
        .expect("transactional id")
        .to_owned();
    let p: FutureProducer = config.create().expect("producer");
    p.init_transactions(Duration::from_secs(30)).expect("init");
    p.begin_transaction().expect("begin");
    (p, id)
}

/// Logging, `topics` created with one partition each, and the settings of the test's
/// clients: a transaction timeout far beyond its waits.
fn setup(topics: &[&str]) -> (KafkaSettings, Settings) {
    init_logging();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for topic in topics {
        rt.block_on(create_topic(topic, 1));
    }
    let kafka = KafkaSettings {
        transaction_timeout: Duration::from_secs(120),
        ..settings()
    };
    let s = Settings {
        kafka: kafka.clone(),
        ..Settings::default()
    };
    (kafka, s)
}

#[test]
fn a_restore_fences_the_writer_of_a_transaction_left_open() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let topic = unique("dead-writer-changelog");
    let (kafka, s) = setup(&[&topic]);

    // A previous owner commits two records, tagged as every stage's commits are.
    let (committer, committer_id) = producer(&kafka, &unique("owner-a"));
    let mut batch = Records {
        topic: topic.clone(),
        n: 2,
        offsets: TopicPartitionList::new(),
    };
    eos::commit(
        &committer,
        &committer_id,
        &mut batch,
        &|| None,
        Duration::from_secs(30),
    )
    .expect("committed");

    // The next owner writes three records and dies with its transaction open: its client is
    // never closed, so nothing ends the transaction but the broker's timeout (120 s) or a
    // fence.
    let (dead, dead_id) = producer(&kafka, &unique("owner-b"));
    let dead = ManuallyDrop::new(dead);
    let mut tagger = Tagger::new(&dead_id);
    for i in 0..3u8 {
        let value = [i];
        let record = FutureRecord::to(&topic)
            .partition(0)
            .key(&[9][..])
            .payload(&value[..]);
        send_waiting(&dead, tagger.tag(record)).expect("sent");
    }
    dead.flush(Duration::from_secs(30)).expect("delivered");

    // The records name their writers: the first of each transaction only.
    let writers = read_uncommitted_writers(&kafka, &topic, 5);
    assert_eq!(
        writers,
        vec![
            Some(committer_id.clone()),
            None,
            Some(dead_id.clone()),
            None,
            None
        ]
    );

    // A later owner commits one more record after the open transaction: invisible to
    // `read_committed` readers until that transaction ends.
    let (later, later_id) = producer(&kafka, &unique("owner-c"));
    let mut batch = Records {
        topic: topic.clone(),
        n: 1,
        offsets: TopicPartitionList::new(),
    };
    eos::commit(
        &later,
        &later_id,
        &mut batch,
        &|| None,
        Duration::from_secs(30),
    )
    .expect("committed");

    // A reader of what is committed now (no fencing) stops at the open transaction.
    let mut seen = 0;
    ChangelogReader::of(&s, topic.clone(), &unique("no-fence"))
        .expect("reader")
        .read_partitions(&[0], Duration::from_secs(30), |_| {
            seen += 1;
            Ok(())
        })
        .expect("read to the last stable offset");
    assert_eq!(
        seen, 2,
        "a reader without fencing stops at the open transaction"
    );

    // The restore of the partition's new owner fences the dead writer and reads to the end,
    // long before the broker would have aborted the transaction.
    let own = transactional_producer_config(&kafka, &unique("owner-d"));
    let reader = ChangelogReader::of(&s, topic.clone(), &unique("fence"))
        .expect("reader")
        .fencing(own)
        .expect("fencing reader");
    let started = Instant::now();
    let mut payloads = Vec::new();
    reader
        .read_partitions(&[0], Duration::from_secs(30), |m| {
            payloads.push(m.payload().map(<[u8]>::to_vec));
            Ok(())
        })
        .expect("restored to the end once the dead writer was fenced");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        payloads,
        vec![Some(vec![0]), Some(vec![1]), Some(vec![0])],
        "the committed records before and after the open transaction are restored, none of the fenced one's"
    );

    // The dead writer's incarnation is fenced: it can no longer commit.
    let late = dead.commit_transaction(Duration::from_secs(30));
    assert!(late.is_err(), "the fenced writer committed: {late:?}");
}

#[test]
fn offsets_left_pending_by_a_dead_owner_are_freed_by_fencing_its_last_writer() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    if !driftwatch_tests::broker_available() {
        return;
    }
    let input = unique("dead-owner-input");
    let changelog = unique("dead-owner-changelog");
    let (kafka, s) = setup(&[&input, &changelog]);
    let group = unique("dead-owner-group");
    let member: BaseConsumer = driftwatch_worker::clients::consumer_config(&kafka, &group)
        .create()
        .expect("consumer");
    let offsets_at = |offset: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&input, 0, rdkafka::Offset::Offset(offset))
            .expect("partition");
        tpl
    };

    // The owner commits state and input offsets (5) together, as a stage does.
    let (owner, owner_id) = producer(&kafka, &unique("owner-x"));
    let mut batch = Records {
        topic: changelog.clone(),
        n: 2,
        offsets: offsets_at(5),
    };
    eos::commit(
        &owner,
        &owner_id,
        &mut batch,
        &|| member.group_metadata(),
        Duration::from_secs(30),
    )
    .expect("committed");

    // Its next transaction holds the offsets 9 but none of its records reached the
    // changelog when it dies: the restore finds no open transaction to fence.
    let metadata = member.group_metadata().expect("group metadata");
    owner
        .send_offsets_to_transaction(&offsets_at(9), &metadata, Duration::from_secs(30))
        .expect("offsets sent");
    let owner = ManuallyDrop::new(owner);

    // The next owner's question for stable offsets waits for that transaction.
    let pending = member.committed_offsets(offsets_at(0), Duration::from_secs(2));
    assert!(
        pending.is_err(),
        "offsets of an open transaction were answered: {pending:?}"
    );
    eprintln!(
        "committed offsets held by an open transaction: {:?}",
        pending.err()
    );

    // Fencing the changelog partition's last writer aborts it: the answer is the offsets
    // committed before, long before the broker's 120 s timeout.
    let own = transactional_producer_config(&kafka, &unique("owner-y"));
    let reader = ChangelogReader::of(&s, changelog.clone(), &unique("fence"))
        .expect("reader")
        .fencing(own)
        .expect("fencing reader");
    assert_eq!(reader.fence_last_writers(&[0]), 1, "the last writer fenced");
    let committed = member
        .committed_offsets(offsets_at(0), Duration::from_secs(30))
        .expect("committed offsets once the dead owner was fenced");
    assert_eq!(
        committed.find_partition(&input, 0).map(|e| e.offset()),
        Some(rdkafka::Offset::Offset(5)),
        "the offsets of the aborted transaction are not committed"
    );
    let late = owner.commit_transaction(Duration::from_secs(30));
    assert!(late.is_err(), "the fenced owner committed: {late:?}");

    // A reader whose stage is the last writer fences no one.
    let (next, next_id) = producer(&kafka, &unique("owner-z"));
    let mut own = transactional_producer_config(&kafka, &unique("owner-z"));
    own.set("transactional.id", &next_id);
    let mut batch = Records {
        topic: changelog.clone(),
        n: 1,
        offsets: TopicPartitionList::new(),
    };
    eos::commit(
        &next,
        &next_id,
        &mut batch,
        &|| None,
        Duration::from_secs(30),
    )
    .expect("committed");
    let reader = ChangelogReader::of(&s, changelog, &unique("own"))
        .expect("reader")
        .fencing(own)
        .expect("fencing reader");
    assert_eq!(reader.fence_last_writers(&[0]), 0, "its own stage fenced");
}

/// The writer header of the first `n` records of `topic`[0], read uncommitted.
fn read_uncommitted_writers(kafka: &KafkaSettings, topic: &str, n: usize) -> Vec<Option<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = driftwatch_worker::clients::consumer_config(kafka, &unique("raw"))
        .set("isolation.level", "read_uncommitted")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "only {} records",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == WRITER_HEADER)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            }));
        }
    }
    out
}
