//! A fenced producer is replaced, not fatal: mid-run, another client takes over the
//! transactional id of each stage (as the coordinator does when a broker outage outlasts the
//! transaction timeout: it aborts the transaction and bumps the producer epoch). Both stages
//! must open a new incarnation of their producer, redo their uncommitted work from the
//! changelog, and end with the same exact results as an undisturbed run: the join's committed
//! partials equal the offline reference, the monitor's whole-run metrics count exactly those
//! partials, no drift or retrain event twice.

use std::time::Duration;

use driftwatch_tests::monitor_outputs::{apply_monitor_settings, assert_monitor, create_topics_of};
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{counters_by_model, produce_records, Scenario, LABEL_TIMEOUT_MS};
use driftwatch_tests::settings;
use driftwatch_worker::clients::transactional_producer_config;
use driftwatch_worker::join_stage::JoinStage;
use driftwatch_worker::monitor_stage::MonitorStage;
use driftwatch_worker::settings::Settings;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::oneshot;

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
    // A fixed instance: the transactional ids are known, so they can be taken over.
    s.kafka.instance_id = driftwatch_tests::unique("fenced");
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
    let scenario = Scenario::generate(31, 40_000, now - 2 * 3_600_000);
    let join = JoinStage::new(s.clone()).expect("join stage");
    let handle = join.handle();
    let (stop, rx) = oneshot::channel::<()>();
    let join_task = tokio::spawn(join.run(async {
        let _ = rx.await;
    }));
    let monitor = MonitorStage::new(s.clone()).expect("monitor stage");
    let monitor_handle = monitor.handle();
    let (stop_monitor, rx) = oneshot::channel::<()>();
    let monitor_task = tokio::spawn(monitor.run(async {
        let _ = rx.await;
    }));

    let half = scenario.records.len() / 2;
    produce_records(&s, &scenario.records[..half]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (join_group, monitor_group) = (s.kafka.join_group_id.clone(), s.monitor.group_id.clone());
    let fencing = s.clone();
    tokio::task::spawn_blocking(move || {
        fence(&fencing, &join_group);
        fence(&fencing, &monitor_group);
    })
    .await
    .expect("fencing");
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
    let reference = Outcomes::reference(&scenario);
    let mut reader = PartialsReader::new(&s, 4);
    reader.read_until(reference.total(), Duration::from_secs(60));
    assert_reference(&reader.seen, &reference, &[]);
    tokio::task::block_in_place(|| assert_monitor(&s, &reader, &[], Duration::from_secs(120)));

    let _ = stop.send(());
    join_task
        .await
        .expect("join task")
        .expect("the join stage survives being fenced");
    let _ = stop_monitor.send(());
    monitor_task
        .await
        .expect("monitor task")
        .expect("the monitor stage survives being fenced");
    let stats = handle.stats();
    assert!(
        stats.transactions_aborted > 0,
        "the join's fenced transaction is counted as aborted"
    );
    assert!(
        monitor_handle.stats().transactions_aborted > 0,
        "the monitor's fenced transaction is counted as aborted"
    );
    let by_model = counters_by_model(std::slice::from_ref(&stats));
    assert_eq!(by_model, scenario.expected);
}
