//! Start-up topic checks against the real broker.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use driftwatch_tests::{bootstrap, create_topic, unique};
use driftwatch_worker::clients::member_config;
use driftwatch_worker::settings::GroupProtocol;
use driftwatch_worker::topics::check_copartitioned;
use driftwatch_worker::WorkerError;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

fn client() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("client")
}

#[tokio::test]
async fn equal_partition_counts_pass() {
    let (p, g) = (unique("pred"), unique("gt"));
    create_topic(&p, 4).await;
    create_topic(&g, 4).await;
    let c = client();
    let n = check_copartitioned(c.client(), &bootstrap(), &p, &g, Duration::from_secs(10))
        .expect("co-partitioned");
    assert_eq!(n, 4);
}

#[tokio::test]
async fn different_partition_counts_are_refused_naming_both() {
    let (p, g) = (unique("pred"), unique("gt"));
    create_topic(&p, 4).await;
    create_topic(&g, 6).await;
    let c = client();
    let err = check_copartitioned(c.client(), &bootstrap(), &p, &g, Duration::from_secs(10))
        .expect_err("must refuse");
    assert!(matches!(
        err,
        WorkerError::NotCoPartitioned {
            prediction_partitions: 4,
            ground_truth_partitions: 6,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains(&p) && msg.contains(&g), "{msg}");
    assert!(
        msg.contains("4 partitions") && msg.contains("has 6"),
        "{msg}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn missing_topic_is_named() {
    let p = unique("pred");
    create_topic(&p, 2).await;
    let missing = unique("absent");
    let c = client();
    let err = check_copartitioned(
        c.client(),
        &bootstrap(),
        &p,
        &missing,
        Duration::from_secs(10),
    )
    .expect_err("must refuse");
    assert!(
        matches!(&err, WorkerError::TopicMissing { topic, .. } if topic == &missing),
        "{err}"
    );
}

#[test]
fn unreachable_broker_is_a_clear_retryable_error() {
    // Port 9 (discard) on loopback: nothing listens there.
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9")
        .create()
        .expect("client");
    let err = check_copartitioned(
        c.client(),
        "127.0.0.1:9",
        "a",
        "b",
        Duration::from_millis(1500),
    )
    .expect_err("nothing listens there");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
}

/// Two members of one group subscribed to three co-partitioned topics (the inputs and the
/// repartition topic of `join.misrouted = "repartition"`), with the join's member settings:
/// every partition number they hold, they hold in all three topics.
async fn three_topics_stay_together_under(protocol: GroupProtocol) {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let topics = [unique("pred"), unique("gt"), unique("repartition")];
    for t in &topics {
        create_topic(t, 4).await;
    }
    let group = unique("copartition");
    let kafka = driftwatch_tests::settings();
    let members: Vec<BaseConsumer> = (0..2)
        .map(|_| {
            let c: BaseConsumer = member_config(&kafka, &group, protocol)
                .create()
                .expect("member");
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            c.subscribe(&names).expect("subscribe");
            c
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        for m in &members {
            let _ = m.poll(Duration::from_millis(100));
        }
        let held: Vec<Vec<(String, i32)>> = members
            .iter()
            .map(|m| {
                m.assignment()
                    .map(|a| {
                        a.elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition()))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        let total: usize = held.iter().map(Vec::len).sum();
        if (total == 12 && held.iter().all(|h| !h.is_empty())) || Instant::now() > deadline {
            break held;
        }
    };
    assert_eq!(held.iter().map(Vec::len).sum::<usize>(), 12, "{held:?}");
    for h in &held {
        assert!(!h.is_empty(), "both members get work: {held:?}");
        let partitions: BTreeSet<i32> = h.iter().map(|(_, p)| *p).collect();
        for p in partitions {
            for t in &topics {
                assert!(
                    h.contains(&(t.clone(), p)),
                    "{protocol:?}: partition {p} of {t} is not with the rest: {held:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_co_partitioned_topics_stay_together_under_classic_range() {
    three_topics_stay_together_under(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_co_partitioned_topics_stay_together_under_kip_848_range() {
    three_topics_stay_together_under(GroupProtocol::Consumer).await;
}
