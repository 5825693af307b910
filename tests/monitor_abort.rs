//! The monitor's abort path, forced: the drift-events topic refuses records (its
//! `max.message.bytes` is set below any event's size), so every transaction holding a drift
//! event fails and is aborted. The monitor keeps the output for the next transaction, rewinds
//! to the committed offsets and drops the partials it reads again. Once the topic accepts
//! records again, the output goes out once: the monitor's whole-run metrics count exactly the
//! committed partials, no drift or retrain event id appears twice, and the drifting model's
//! events are there.

use std::time::{Duration, Instant};

use driftwatch_tests::monitor_outputs::assert_monitor;
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{produce_records, Scenario};
use driftwatch_tests::stages::{scenario_settings, Stages};
use driftwatch_worker::settings::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// Sets the topic's `max.message.bytes`.
async fn limit_record_size(s: &Settings, topic: &str, bytes: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &s.kafka.bootstrap_servers)
        .create()
        .expect("admin client");
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", bytes);
    let results = admin
        .alter_configs(&[config], &AdminOptions::new())
        .await
        .expect("alter configs");
    for r in results {
        r.unwrap_or_else(|e| panic!("max.message.bytes of {topic}: {e:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_monitor_transactions_are_redone_exactly_once() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let s = scenario_settings(4).await;
    limit_record_size(&s, &s.topics.drift_events, "100").await;
    let now = driftwatch_tests::now_ms();
    let scenario = Scenario::generate(41, 40_000, now - 2 * 3_600_000);
    let stages = Stages::start(&s);
    produce_records(&s, &scenario.records).await;
    stages
        .wait_for_inputs(scenario.inputs(), Duration::from_secs(120))
        .await;

    // The drift must have been detected, and its transactions refused, several times over.
    let deadline = Instant::now() + Duration::from_secs(120);
    while stages.monitor.stats().transactions_aborted < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let aborted = stages.monitor.stats().transactions_aborted;
    assert!(aborted >= 3, "monitor transactions aborted: {aborted}");
    limit_record_size(&s, &s.topics.drift_events, "1048588").await;

    let reference = Outcomes::reference(&scenario);
    let mut reader = PartialsReader::new(&s, 4);
    reader.read_until(reference.total(), Duration::from_secs(60));
    assert_reference(&reader.seen, &reference, &[]);
    tokio::task::block_in_place(|| assert_monitor(&s, &reader, &[], Duration::from_secs(120)));
    let (_, monitor) = stages.stop().await;
    assert!(monitor.transactions_committed > 0);
}
