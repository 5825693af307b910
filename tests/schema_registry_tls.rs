//! The schema registry over TLS: the real registry of `scripts/schema-registry` also answers
//! HTTPS, with a certificate of a test CA (`scripts/kafka-tls`), and the join reaches it with
//! `schema_registry.url = "https://…"` on the real broker.
//! - With `ca_file` naming that CA, framed predictions and labels are decoded with the
//!   schemas fetched over HTTPS and join exactly.
//! - With `ca_file` naming a CA that signed nothing here, the TLS handshake fails: the records
//!   wait (nothing dead-lettered, nothing joined) and the stage reports the certificate error.

use std::path::Path;
use std::time::Duration;

use driftwatch_codec::RecordKind;
use driftwatch_tests::registry_records::{
    framed_label, framed_prediction, label, prediction, total, wait_for,
};
use driftwatch_tests::scenario::{produce_records, Record};
use driftwatch_tests::schema_registry::{
    register, require_schema_registry, require_schema_registry_tls,
};
use driftwatch_tests::{create_topic, now_ms, settings, unique};
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;

const N: usize = 150;

/// Settings of a join over new topics, reaching the registry at `url` trusting `ca`.
async fn join_settings(prefix: &str, url: &str, ca: &Path) -> Settings {
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.join_group_id = unique(&format!("{prefix}-join"));
    s.topics.predictions = unique(&format!("{prefix}-predictions"));
    s.topics.ground_truth = unique(&format!("{prefix}-ground-truth"));
    s.topics.model_partials = unique(&format!("{prefix}-partials"));
    s.topics.dead_letter = unique(&format!("{prefix}-dead-letter"));
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
    s.schema_registry.url = url.to_string();
    s.schema_registry.ca_file = Some(ca.to_path_buf());
    s.schema_registry.max_backoff = Duration::from_millis(500);
    s.validate().expect("valid settings");
    s
}

/// `N` framed predictions and their labels, under schemas registered (over plain HTTP, as a
/// producer elsewhere would) for the settings' topics.
async fn traffic(s: &Settings, http_url: &str, prefix: &str) -> Vec<Record> {
    let p_id = register(
        http_url,
        &format!("{}-value", s.topics.predictions),
        RecordKind::Prediction.schema_text(),
    )
    .await;
    let g_id = register(
        http_url,
        &format!("{}-value", s.topics.ground_truth),
        RecordKind::GroundTruth.schema_text(),
    )
    .await;
    let t0 = now_ms() - 120_000;
    (0..N)
        .flat_map(|i| {
            [
                framed_prediction(&prediction(prefix, i, t0), p_id, &[]),
                framed_label(&label(prefix, i, t0), g_id),
            ]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_fetched_over_tls_and_a_wrong_ca_holds_the_records() {
    driftwatch_tests::init_logging();
    let (Some(http_url), Some((https_url, ca, other_ca))) =
        (require_schema_registry(), require_schema_registry_tls())
    else {
        return;
    };

    // The CA that signed the registry's certificate.
    let s = join_settings("srt", &https_url, &ca).await;
    produce_records(&s, &traffic(&s, &http_url, "srt").await).await;
    let running = Pipeline::new(&s, Role::Join).expect("join stage").start();
    let handle = running.handles().join.clone().expect("join stage runs");
    let end = wait_for(
        "joined with schemas fetched over TLS",
        || handle.stats(),
        |st| total(st).matched >= N as u64,
    )
    .await;
    running.stop().await.expect("join stage run");
    let c = total(&end);
    assert_eq!(
        (c.matched, c.dead_lettered, c.orphan_labels),
        (N as u64, 0, 0)
    );
    assert!(end.schema_registry_error.is_none(), "{end:?}");

    // A CA that signed nothing here: the handshake fails, the records wait.
    let s = join_settings("srw", &https_url, &other_ca).await;
    produce_records(&s, &traffic(&s, &http_url, "srw").await).await;
    let running = Pipeline::new(&s, Role::Join).expect("join stage").start();
    let handle = running.handles().join.clone().expect("join stage runs");
    let failing = wait_for(
        "the registry's certificate refused",
        || handle.stats(),
        |st| st.schema_registry_error.is_some() && st.schema_registry_held > 0,
    )
    .await;
    let error = failing.schema_registry_error.clone().unwrap_or_default();
    assert!(
        error.contains("TLS") && error.contains("certificate verify failed"),
        "{error}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = total(&handle.stats());
    running.stop().await.expect("join stage run");
    assert_eq!(
        (still.matched, still.dead_lettered),
        (0, 0),
        "nothing joined or dead-lettered"
    );
    println!("wrong CA: {error}");
}
