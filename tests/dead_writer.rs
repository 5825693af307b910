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

#[test]
fn a_restore_fences_the_writer_of_a_transaction_left_open() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    init_logging();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let topic = unique("dead-writer-changelog");
    rt.block_on(create_topic(&topic, 1));
    let kafka = KafkaSettings {
        transaction_timeout: Duration::from_secs(120),
        ..settings()
    };
    let s = Settings {
        kafka: kafka.clone(),
        ..Settings::default()
    };

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
