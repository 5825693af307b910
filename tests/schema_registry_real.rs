//! Framed Avro with writer schemas from a **real** schema registry — Apicurio Registry's
//! Confluent-compatible API, started by `scripts/schema-registry` (tests/support/
//! schema_registry.rs finds it) — on the real broker. The writer schemas are registered over
//! its REST API as a producer's serializer registers them, and the records carry the ids it
//! hands out:
//! - predictions of `Prediction`, predictions of an evolved writer (one more field, with a
//!   default) and labels of `GroundTruth` join, exactly counted;
//! - predictions framed with an id the registry does not have go to the dead-letter topic with
//!   kind `registry_schema` and the registry's 40403 reason;
//! - with the registry stopped (`scripts/schema-registry stop`, the same `DRIFTWATCH_SR_DIR`),
//!   predictions of the evolved writer's id, not fetched yet, wait — nothing is dead-lettered or
//!   lost, the worker reports the registry as not ready — and are joined once it is started
//!   again (same port, same schemas and ids).

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use driftwatch_codec::RecordKind;
use driftwatch_tests::registry_records::{
    evolved_prediction_schema, framed_label, framed_prediction, label, prediction, total, wait_for,
};
use driftwatch_tests::scenario::{produce_records, Record};
use driftwatch_tests::schema_registry::{register, require_schema_registry};
use driftwatch_tests::{create_topic, now_ms, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;

/// `scripts/schema-registry <verb>`; returns what it printed.
fn registry_script(verb: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schema-registry");
    let out = Command::new(script)
        .arg(verb)
        .output()
        .unwrap_or_else(|e| panic!("{script} {verb}: {e}"));
    assert!(
        out.status.success(),
        "{script} {verb}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Request-id prefix of this test's records.
const PREFIX: &str = "srr";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_framed_with_ids_of_a_real_registry_are_decoded_and_wait_while_it_is_down() {
    driftwatch_tests::init_logging();
    let Some(url) = require_schema_registry() else {
        return;
    };
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.join_group_id = unique("srr-join");
    s.topics.predictions = unique("srr-predictions");
    s.topics.ground_truth = unique("srr-ground-truth");
    s.topics.model_partials = unique("srr-partials");
    s.topics.dead_letter = unique("srr-dead-letter");
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

    let p_id = register(
        &url,
        &format!("{}-value", s.topics.predictions),
        RecordKind::Prediction.schema_text(),
    )
    .await;
    let g_id = register(
        &url,
        &format!("{}-value", s.topics.ground_truth),
        RecordKind::GroundTruth.schema_text(),
    )
    .await;
    let evolved_id = register(
        &url,
        &format!("{}-value", s.topics.predictions),
        &evolved_prediction_schema(),
    )
    .await;
    let ids = BTreeSet::from([p_id, g_id, evolved_id]);
    assert_eq!(ids.len(), 3, "three schemas, three ids: {ids:?}");
    // Far above anything this registry has handed out.
    let unknown_id = ids.iter().max().copied().unwrap_or(0) + 1_000_000;
    s.schema_registry.url = url.clone();
    s.schema_registry.max_backoff = Duration::from_millis(500);
    s.schema_registry.timeout = Duration::from_secs(5);

    let t0 = now_ms() - 120_000;
    const OLD: usize = 200;
    const EVOLVED: usize = 100;
    const UNKNOWN: usize = 3;
    let mut first: Vec<Record> = (0..OLD)
        .flat_map(|i| {
            [
                framed_prediction(&prediction(PREFIX, i, t0), p_id, &[]),
                framed_label(&label(PREFIX, i, t0), g_id),
            ]
        })
        .collect();
    for i in 0..UNKNOWN {
        first.push(framed_prediction(
            &prediction(PREFIX, 10_000 + i, t0),
            unknown_id,
            &[],
        ));
    }
    produce_records(&s, &first).await;

    let running = Pipeline::new(&s, Role::Join).expect("join stage").start();
    let handle = running.handles().join.clone().expect("join stage runs");
    let stats = || handle.stats();
    let after_first = wait_for("first batch joined", stats, |st| {
        let c = total(st);
        c.matched >= OLD as u64 && c.dead_lettered >= UNKNOWN as u64
    })
    .await;
    assert!(after_first.schema_registry_error.is_none());

    // The registry goes away; predictions of the evolved writer's id arrive.
    registry_script("stop");
    // "channel" = "app": string length 3 (zig-zag 6), then the bytes.
    let channel = [6u8, b'a', b'p', b'p'];
    let second: Vec<Record> = (OLD..OLD + EVOLVED)
        .flat_map(|i| {
            [
                framed_prediction(&prediction(PREFIX, i, t0), evolved_id, &channel),
                framed_label(&label(PREFIX, i, t0), g_id),
            ]
        })
        .collect();
    produce_records(&s, &second).await;
    wait_for("the registry reported as failing", stats, |st| {
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
        still.matched, OLD as u64,
        "nothing of the evolved id while down"
    );
    assert_eq!(
        still.dead_lettered, UNKNOWN as u64,
        "nothing dead-lettered while down"
    );

    assert_eq!(registry_script("start"), url, "restarted on the same URL");
    wait_for("second batch joined", stats, |st| {
        total(st).matched >= (OLD + EVOLVED) as u64 && st.schema_registry_error.is_none()
    })
    .await;
    running.stop().await.expect("join stage run");
    let end = handle.stats();
    assert!(end.schema_registry_error.is_none(), "{end:?}");
    let c = total(&end);
    assert_eq!(c.matched, (OLD + EVOLVED) as u64, "{c:?}");
    assert_eq!(c.dead_lettered, UNKNOWN as u64, "{c:?}");
    assert_eq!(c.duplicate_predictions + c.duplicate_labels, 0, "{c:?}");
    assert_eq!(c.orphan_labels + c.late_labels, 0, "{c:?}");

    // The dead letters: exactly the records of the unknown id, with the registry's reason.
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("srr-dl-reader"))
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
    assert_eq!(letters.len(), UNKNOWN, "{letters:?}");
    for (kind, message) in &letters {
        assert_eq!(kind, "registry_schema");
        assert!(
            message.contains(&format!("schema id {unknown_id}")) && message.contains("40403"),
            "{message}"
        );
    }
}
