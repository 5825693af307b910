//! Framed Avro with writer schemas from a schema registry, on the real broker. The registry is
//! the in-process **stub** of tests/support/registry_stub.rs (the Confluent REST calls
//! driftwatch makes, not a registry product; tests/schema_registry_real.rs runs against a real
//! one), which counts the requests: each id is fetched once. Schemas are registered over HTTP as a
//! serializer registers them, and the records carry the ids handed out (1, 2, 3):
//! - predictions framed with id 1 (`Prediction`) and labels with id 2 (`GroundTruth`) join,
//!   exactly counted;
//! - a prediction framed with an id the registry does not have goes to the dead-letter topic
//!   with kind `registry_schema` and the registry's 40403 reason;
//! - with the registry stopped, predictions of a new id (3: an evolved writer with an extra
//!   field with a default) wait — nothing is dead-lettered or lost, the worker reports the
//!   registry as not ready — and are joined once it is back.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driftwatch_codec::RecordKind;
use driftwatch_tests::registry_records::{
    evolved_prediction_schema, framed_label, framed_prediction, label, prediction, total, wait_for,
};
use driftwatch_tests::registry_stub::RegistryStub;
use driftwatch_tests::scenario::{produce_records, Record};
use driftwatch_tests::{create_topic, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;

const UNKNOWN_ID: u32 = 99;

/// Request-id prefix of this test's records.
const PREFIX: &str = "sr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framed_records_are_decoded_with_registry_schemas_and_wait_while_it_is_down() {
    driftwatch_tests::init_logging();
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.join_group_id = unique("sr-join");
    s.topics.predictions = unique("sr-predictions");
    s.topics.ground_truth = unique("sr-ground-truth");
    s.topics.model_partials = unique("sr-partials");
    s.topics.dead_letter = unique("sr-dead-letter");
    for t in [
        &s.topics.predictions,
        &s.topics.ground_truth,
        &s.topics.model_partials,
    ] {
        create_topic(t, 2).await;
    }
    create_topic(&s.topics.dead_letter, 1).await;
    s.join.label_timeout = Duration::from_secs(600);
    s.join.orphan_timeout = Duration::from_secs(600);
    s.join.flush_interval = Duration::from_millis(300);

    let mut registry = RegistryStub::start().await;
    let p_id = registry
        .register(
            &format!("{}-value", s.topics.predictions),
            RecordKind::Prediction.schema_text(),
        )
        .await;
    let g_id = registry
        .register(
            &format!("{}-value", s.topics.ground_truth),
            RecordKind::GroundTruth.schema_text(),
        )
        .await;
    let evolved_id = registry
        .register(
            &format!("{}-value", s.topics.predictions),
            &evolved_prediction_schema(),
        )
        .await;
    assert_eq!(
        (p_id, g_id, evolved_id),
        (1, 2, 3),
        "ids as a registry hands them out"
    );
    s.schema_registry.url = registry.url();
    s.schema_registry.max_backoff = Duration::from_millis(500);
    s.schema_registry.timeout = Duration::from_secs(2);

    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 120_000;
    const FIRST: usize = 200;
    const SECOND: usize = 100;
    let mut first: Vec<Record> = (0..FIRST)
        .flat_map(|i| {
            [
                framed_prediction(&prediction(PREFIX, i, t0), p_id, &[]),
                framed_label(&label(PREFIX, i, t0), g_id),
            ]
        })
        .collect();
    for i in 0..3 {
        first.push(framed_prediction(
            &prediction(PREFIX, 10_000 + i, t0),
            UNKNOWN_ID,
            &[],
        ));
    }
    produce_records(&s, &first).await;

    let running = Pipeline::new(&s, Role::Join).expect("join stage").start();
    let handle = running.handles().join.clone().expect("join stage runs");
    let stats = || handle.stats();
    let after_first = wait_for("first batch joined", stats, |st| {
        let c = total(st);
        c.matched >= FIRST as u64 && c.dead_lettered >= 3
    })
    .await;
    assert!(after_first.schema_registry_error.is_none());

    // The registry goes away; predictions of a new writer schema id arrive.
    registry.stop();
    // "channel" = "app": string length 3 (zig-zag 6), then the bytes.
    let channel = [6u8, b'a', b'p', b'p'];
    let second: Vec<Record> = (FIRST..FIRST + SECOND)
        .flat_map(|i| {
            [
                framed_prediction(&prediction(PREFIX, i, t0), evolved_id, &channel),
                framed_label(&label(PREFIX, i, t0), g_id),
            ]
        })
        .collect();
    produce_records(&s, &second).await;
    let waiting = wait_for("the registry reported as failing", stats, |st| {
        st.schema_registry_error.is_some() && st.schema_registry_held > 0
    })
    .await;
    let status = driftwatch_worker::status::StageHandles {
        join: Some((handle.clone(), s.kafka.join_group_id.clone())),
        ..Default::default()
    }
    .status();
    assert!(!status.readiness.schema_registry && !status.readiness.is_ready());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = total(&handle.stats());
    assert_eq!(
        still.matched, FIRST as u64,
        "nothing of id 3 decoded while down"
    );
    assert_eq!(still.dead_lettered, 3, "nothing dead-lettered while down");
    assert!(total(&waiting).matched == FIRST as u64);

    registry.restart().await;
    let end = wait_for("second batch joined", stats, |st| {
        total(st).matched >= (FIRST + SECOND) as u64 && st.schema_registry_error.is_none()
    })
    .await;
    running.stop().await.expect("join stage run");
    let end = {
        let _ = end;
        handle.stats()
    };
    let c = total(&end);
    assert_eq!(c.matched, (FIRST + SECOND) as u64, "{c:?}");
    assert_eq!(c.dead_lettered, 3, "{c:?}");
    assert_eq!(c.duplicate_predictions + c.duplicate_labels, 0, "{c:?}");
    assert_eq!(c.orphan_labels + c.late_labels, 0, "{c:?}");
    assert_eq!(
        registry
            .schema_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        4,
        "ids 1, 2, 3 and 99 each fetched once (cached, and the absent one remembered)"
    );

    // The dead letters: exactly the three records of the unknown id, with the reason.
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("sr-dl-reader"))
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&s.topics.dead_letter])
        .expect("subscribe");
    let mut stream = consumer.stream();
    let mut letters = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(8), stream.next()).await {
        let m = m.expect("consume");
        let header = |k: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == k))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).to_string())
                .unwrap_or_default()
        };
        letters.push((
            header("driftwatch.error.kind"),
            header("driftwatch.error.message"),
        ));
    }
    assert_eq!(letters.len(), 3, "{letters:?}");
    for (kind, message) in &letters {
        assert_eq!(kind, "registry_schema");
        assert!(
            message.contains("schema id 99") && message.contains("40403"),
            "{message}"
        );
    }
}
