//! A fenced producer is replaced, not fatal: mid-run, another client takes over the
//! transactional id of each stage (as the coordinator does when a broker outage outlasts the
//! transaction timeout: it aborts the transaction and bumps the producer epoch). Both stages
//! must open a new incarnation of their producer, redo their uncommitted work from the
//! changelog, and end with the same exact results as an undisturbed run: the join's committed
//! partials equal the offline reference, the monitor's whole-run metrics count exactly those
//! partials, no drift or retrain event twice.
//!
//! A *stuck* producer (its transaction calls still time out after the retries: a client that
//! cannot reach its transaction coordinator after a broker restart) is replaced the same way,
//! without an abort through it, and the new incarnation aborts what it left open.

use std::time::{Duration, Instant};

use driftwatch_tests::scenario::{counters_by_model, Scenario};
use driftwatch_tests::stages::{run_disrupted, scenario_settings};
use driftwatch_tests::{create_topic, init_logging, settings, unique};
use driftwatch_worker::clients::{consumer_config, transactional_producer_config};
use driftwatch_worker::runtime::eos::Recovery;
use driftwatch_worker::runtime::transaction::send_waiting;
use driftwatch_worker::runtime::{Commits, Eos};
use driftwatch_worker::settings::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Fences the stage whose transactional producer belongs to `group`: a new producer with the
/// same transactional id initializes transactions, which bumps the epoch.
fn fence(s: &Settings, group: &str) {
    let intruder: FutureProducer = transactional_producer_config(&s.kafka, group)
        .create()
        .expect("intruder producer");
    intruder
        .init_transactions(Duration::from_secs(30))
        .expect("intruder takes the transactional id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_producers_are_replaced_and_nothing_is_lost_or_doubled() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let mut s = scenario_settings(4).await;
    // A fixed instance: the transactional ids are known, so they can be taken over.
    s.kafka.instance_id = driftwatch_tests::unique("fenced");
    let now = driftwatch_tests::now_ms();
    let scenario = Scenario::generate(31, 40_000, now - 2 * 3_600_000);
    let (join_group, monitor_group) = (s.kafka.join_group_id.clone(), s.monitor.group_id.clone());
    let fencing = s.clone();
    // Both stages survive being fenced: `run_disrupted` checks they stop without error.
    let (join, monitor) = run_disrupted(&s, &scenario, 4, move || {
        fence(&fencing, &join_group);
        fence(&fencing, &monitor_group);
    })
    .await;
    assert!(
        join.transactions_aborted > 0,
        "the join's fenced transaction is counted as aborted"
    );
    assert!(
        monitor.transactions_aborted > 0,
        "the monitor's fenced transaction is counted as aborted"
    );
    let by_model = counters_by_model(std::slice::from_ref(&join));
    assert_eq!(by_model, scenario.expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_producer_is_replaced_and_what_it_left_open_is_aborted() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    init_logging();
    let topic = unique("stuck-producer");
    create_topic(&topic, 1).await;
    let kafka = settings();
    let config = transactional_producer_config(&kafka, &unique("stuck"));
    let record = |payload: &'static [u8]| {
        FutureRecord::<[u8], [u8]>::to(&topic)
            .partition(0)
            .payload(payload)
    };
    tokio::task::block_in_place(|| {
        // A producer with records in its open transaction, whose next call "timed out" for
        // longer than the retries allow.
        let stuck: FutureProducer = config.create().expect("producer");
        stuck
            .init_transactions(Duration::from_secs(30))
            .expect("init");
        stuck.begin_transaction().expect("begin");
        for payload in [&b"left-open-1"[..], b"left-open-2"] {
            send_waiting(&stuck, record(payload)).expect("sent");
        }
        stuck.flush(Duration::from_secs(30)).expect("delivered");
        let mut eos = Eos::new(config.clone(), Duration::from_secs(10), Commits::Inline);
        let timed_out = KafkaError::MessageProduction(RDKafkaErrorCode::OperationTimedOut);
        let started = Instant::now();
        // An abort through the stuck producer would have answered `Aborted`.
        let Recovery::Reincarnated(fresh) = eos.recover(&stuck, Some(timed_out)) else {
            panic!("a stuck producer must be replaced, not used to abort");
        };
        println!("replaced in {:?}", started.elapsed());
        // The old incarnation is fenced: it can no longer commit what it left open.
        assert!(
            stuck.commit_transaction(Duration::from_secs(10)).is_err(),
            "the stuck incarnation still commits"
        );
        // The new one has a transaction open and commits; readers see its record only.
        send_waiting(&fresh, record(b"fresh")).expect("sent");
        fresh
            .commit_transaction(Duration::from_secs(30))
            .expect("the new incarnation commits");
        assert_eq!(
            read_committed(&kafka, &topic, b"fresh"),
            vec![b"fresh".to_vec()]
        );
    });
}

/// The `read_committed` payloads of partition 0 of `topic` up to and including `last`.
fn read_committed(
    kafka: &driftwatch_worker::settings::KafkaSettings,
    topic: &str,
    last: &[u8],
) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = consumer_config(kafka, &unique("reader"))
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let mut seen = Vec::new();
    while seen.last().map(Vec::as_slice) != Some(last) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "read {seen:?} only"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            seen.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    seen
}
