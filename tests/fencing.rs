//! A fenced producer is replaced, not fatal: mid-run, another client takes over the
//! transactional id of each stage (as the coordinator does when a broker outage outlasts the
//! transaction timeout: it aborts the transaction and bumps the producer epoch). Both stages
//! must open a new incarnation of their producer, redo their uncommitted work from the
//! changelog, and end with the same exact results as an undisturbed run: the join's committed
//! partials equal the offline reference, the monitor's whole-run metrics count exactly those
//! partials, no drift or retrain event twice.

use std::time::Duration;

use driftwatch_tests::scenario::{counters_by_model, Scenario};
use driftwatch_tests::stages::{run_disrupted, scenario_settings};
use driftwatch_worker::clients::transactional_producer_config;
use driftwatch_worker::settings::Settings;
use rdkafka::producer::{FutureProducer, Producer};

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
