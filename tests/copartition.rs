//! Start-up topic checks against the real broker.

use std::time::Duration;

use driftwatch_tests::{bootstrap, create_topic, unique};
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
