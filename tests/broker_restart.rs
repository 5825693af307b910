//! A broker restart in the middle of the traffic: both stages (exactly-once) reconnect by
//! themselves; the join's own accounting and the partials it committed equal the offline
//! reference exactly (transactions that fail while the broker is away are aborted and their work
//! is done again from the changelog), and the monitor's whole-run metrics count exactly those
//! partials, with no drift or retrain event twice and the drifting model's events present.
//!
//! Restarts the test broker of `scripts/kafka` (same ports, same storage), so it lives in its own
//! test binary: nothing else runs against the broker meanwhile.

use std::process::Command;
use std::time::Duration;

use driftwatch_tests::monitor_outputs::{apply_monitor_settings, assert_monitor, create_topics_of};
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{counters_by_model, produce_records, Scenario, LABEL_TIMEOUT_MS};
use driftwatch_tests::settings;
use driftwatch_worker::join_stage::JoinStage;
use driftwatch_worker::monitor_stage::MonitorStage;
use driftwatch_worker::settings::Settings;
use tokio::sync::oneshot;

fn kafka(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");
    let status = Command::new("bash")
        .arg(script)
        .arg(cmd)
        .status()
        .expect("scripts/kafka");
    assert!(status.success(), "scripts/kafka {cmd} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_and_duplicates_nothing() {
    if std::env::var_os("DRIFTWATCH_TEST_BOOTSTRAP").is_none() {
        eprintln!("skipped: needs the broker of scripts/kafka (run scripts/test)");
        return;
    }
    driftwatch_tests::init_logging();
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, 4).await;
    apply_monitor_settings(&mut s);
    s.join.label_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    s.join.orphan_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    s.join.allowed_lateness = Duration::from_secs(30);
    s.join.max_task_idle = Duration::from_secs(1);
    s.join.idle_timeout = Duration::from_secs(3);
    s.join.flush_interval = Duration::from_millis(500);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let scenario = Scenario::generate(11, 40_000, now - 2 * 3_600_000);
    let stage = JoinStage::new(s.clone()).expect("join stage");
    let handle = stage.handle();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(stage.run(async {
        let _ = rx.await;
    }));
    let monitor = MonitorStage::new(s.clone()).expect("monitor stage");
    let (stop_monitor, rx) = oneshot::channel::<()>();
    let monitor_task = tokio::spawn(monitor.run(async {
        let _ = rx.await;
    }));
    let half = scenario.records.len() / 2;
    produce_records(&s, &scenario.records[..half]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    kafka("stop");
    tokio::time::sleep(Duration::from_secs(3)).await;
    kafka("start");

    produce_records(&s, &scenario.records[half..]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let total: u64 = handle
            .stats()
            .per_model
            .values()
            .map(driftwatch_core::JoinCounters::inputs)
            .sum();
        if total >= scenario.inputs() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The join stops once it counted every input; the monitor after its checks below.
    let _ = stop.send(());
    task.await.expect("task").expect("join stage");
    let stats = handle.stats();
    assert_eq!(stats.dropped_on_revoke, 0, "a rebalance dropped state");
    let by_model = counters_by_model(std::slice::from_ref(&stats));
    assert_eq!(by_model, scenario.expected);
    // What the monitor would read: the committed partials sum to the reference exactly (an
    // aborted transaction's partials are invisible, none is committed twice).
    let reference = Outcomes::reference(&scenario);
    let mut reader = PartialsReader::new(&s, 4);
    reader.read_until(reference.total(), Duration::from_secs(60));
    assert_reference(&reader.seen, &reference, &[]);
    tokio::task::block_in_place(|| assert_monitor(&s, &reader, &[], Duration::from_secs(120)));
    let _ = stop_monitor.send(());
    monitor_task
        .await
        .expect("monitor task")
        .expect("monitor stage");
}
