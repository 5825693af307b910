//! Chaos tests of exactly-once processing on the real broker, through both stages: workers run
//! as `driftwatch run --role all` processes (join and monitor in one process, as deployed),
//! are killed with SIGKILL at random moments and restarted, or scaled 1 → 3 → 1 (the two extra
//! workers SIGKILLed), while traffic flows. Afterwards, read as `read_committed` consumers:
//! - the partials must sum to exactly the offline reference of the scenario: per model,
//!   matched, expired unlabeled, orphan, duplicate and late counts and every confusion cell;
//! - the monitor's latest metrics over a window spanning the whole run must count exactly the
//!   predictions, matched outcomes and correct ones of the committed partials of its buckets
//!   (its windows, restored from its changelog after each kill or hand-over, merged every
//!   partial once);
//! - no drift event id and no retrain event id appears twice (each model's decisions were made
//!   by one owner at a time, from state that continued exactly), and the drifting model has
//!   its drift and retrain events;
//! - every garbage record is on the dead-letter topic exactly once (read committed, by its
//!   origin headers).
//!
//! A third test scales 1 → 2 → 4 → 2 workers over 8 partitions with the KIP-848 `consumer`
//! group protocol: the same exact counts, and the worker that stays never gives up all its
//! partitions at once (only moved partitions are revoked).
//!
//! A fourth test arms one worker incarnation after another at a named fault point
//! (`driftwatch_worker::fault`: transaction open with records sent, between sending the
//! offsets and committing, a dead letter sent, mid-restore, an assignment restored but not yet
//! taken) and checks that each died there by SIGKILL, then the same exact counts.
//!
//! One input lost, or counted twice, fails the test. The default run is short (50 000
//! predictions); `DRIFTWATCH_CHAOS_FULL=1` runs 1 000 000 predictions with more kills.

use std::path::PathBuf;
use std::time::Duration;

use driftwatch_tests::monitor_outputs::{assert_monitor, create_topics_of, MONITOR_TOML};
use driftwatch_tests::outcomes::{
    assert_dead_letters_once, assert_reference, Outcomes, PartialsReader,
};
use driftwatch_tests::scenario::{produce_in_background, Scenario};
use driftwatch_tests::settings;
use driftwatch_tests::worker::Worker;
use driftwatch_worker::settings::{GroupProtocol, Settings};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PARTITIONS: i32 = 4;

fn full() -> bool {
    std::env::var("DRIFTWATCH_CHAOS_FULL").is_ok_and(|v| v == "1")
}

fn monitor_timeout() -> Duration {
    Duration::from_secs(if full() { 600 } else { 180 })
}

/// Settings of one test and the configuration file its workers read (the monitor's detection
/// settings: lists are awkward in environment variables).
async fn chaos_settings() -> (Settings, PathBuf) {
    chaos_settings_with(PARTITIONS, GroupProtocol::Classic).await
}

async fn chaos_settings_with(partitions: i32, protocol: GroupProtocol) -> (Settings, PathBuf) {
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.group_protocol = protocol;
    create_topics_of(&mut s, partitions).await;
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(&config, MONITOR_TOML).expect("worker configuration file");
    (s, config)
}

/// What every chaos run must end with: the committed partials equal the offline reference
/// (read until they add up, or the timeout), each garbage record on the dead-letter topic
/// once, and the monitor's whole-run metrics counting exactly those partials.
fn assert_exact(
    s: &Settings,
    partitions: i32,
    scenario: &Scenario,
    reference: &Outcomes,
    logs: &[PathBuf],
) {
    let mut reader = PartialsReader::new(s, partitions);
    reader.read_until(
        reference.total(),
        Duration::from_secs(if full() { 1_200 } else { 240 }),
    );
    assert_reference(&reader.seen, reference, logs);
    assert_dead_letters_once(s, scenario);
    assert_monitor(s, &reader, logs, monitor_timeout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_repeatedly_loses_and_duplicates_nothing() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let setup = chaos_settings().await;
    let s = &setup.0;
    let (n, kills) = if full() { (1_000_000, 8) } else { (50_000, 5) };
    let scenario = Scenario::generate(21, n, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    let producing = produce_in_background(s, &scenario, 20, Duration::from_millis(500));
    let mut rng = SmallRng::seed_from_u64(5);
    let mut logs = Vec::new();
    let mut worker = Worker::start(&setup, "a", Some("a"));
    logs.push(worker.log.clone());
    for k in 0..kills {
        // Killed at a random moment of processing: start-up, restore, or steady state.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(2_000..7_000))).await;
        worker.kill_nine();
        // Mostly restarted under the same name: a static member that takes its partitions
        // back at once and fences the dead one's open transaction. Once as a new dynamic
        // member, which waits for the dead one to leave the group and, while restoring,
        // fences the dead one's transactional id (named by its records) to end the open
        // transaction.
        worker = if k == 2 {
            Worker::start(&setup, "b", None)
        } else {
            Worker::start(&setup, "a", Some("a"))
        };
        logs.push(worker.log.clone());
    }
    producing.await.expect("producer");
    assert_exact(s, PARTITIONS, &scenario, &reference, &logs);
    let status = worker.terminate();
    assert!(status.success(), "worker exit {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_one_three_one_loses_and_duplicates_nothing() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let setup = chaos_settings().await;
    let s = &setup.0;
    let n = if full() { 1_000_000 } else { 50_000 };
    let scenario = Scenario::generate(22, n, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    let producing = produce_in_background(s, &scenario, 20, Duration::from_millis(500));
    // Dynamic members: a stopped worker leaves the group, its partitions move at once.
    let first = Worker::start(&setup, "one", None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = Worker::start(&setup, "two", None);
    let third = Worker::start(&setup, "three", None);
    let logs = vec![first.log.clone(), second.log.clone(), third.log.clone()];
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Scaled down by SIGKILL: no commit, no leaving the group. The group moves their
    // partitions once their sessions expire; their open transactions are aborted by the
    // broker (their transactional ids are random) after `kafka.transaction_timeout`.
    for w in [second, third] {
        w.kill_nine();
    }
    producing.await.expect("producer");
    assert_exact(s, PARTITIONS, &scenario, &reference, &logs);
    let status = first.terminate();
    assert!(status.success(), "worker exit {status}");
}

/// The join stage's "partitions revoked" lists in a worker's log, in order.
fn join_revocations(log: &std::path::Path) -> Vec<Vec<i32>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    driftwatch_tests::worker::strip_ansi(&text)
        .lines()
        .filter(|l| l.contains("partitions revoked") && l.contains("stage=\"join\""))
        .filter_map(|l| {
            let list = l.split("partitions=[").nth(1)?.split(']').next()?;
            Some(
                list.split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_with_the_consumer_protocol_moves_only_moved_partitions() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    const WIDE: i32 = 8;
    let setup = chaos_settings_with(WIDE, GroupProtocol::Consumer).await;
    let s = &setup.0;
    let n = if full() { 1_000_000 } else { 50_000 };
    let scenario = Scenario::generate(23, n, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    let producing = produce_in_background(s, &scenario, 20, Duration::from_millis(500));
    // Monitor standbys on: the monitor partitions that move are restored from the copies the
    // receiving worker kept, and the monitor's whole-run metrics must still be exact.
    let start = |name: &str| {
        Worker::start_with(
            &setup,
            name,
            None,
            None,
            &[("DRIFTWATCH__MONITOR__STANDBY_REPLICAS", "1".to_string())],
        )
    };
    let first = start("one");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = start("two");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let third = start("three");
    let fourth = start("four");
    let logs = vec![
        first.log.clone(),
        second.log.clone(),
        third.log.clone(),
        fourth.log.clone(),
    ];
    tokio::time::sleep(Duration::from_secs(8)).await;
    for w in [third, fourth] {
        let status = w.terminate();
        assert!(status.success(), "scaled-down worker exit {status}");
    }
    producing.await.expect("producer");
    assert_exact(s, WIDE, &scenario, &reference, &logs);
    // Before its own shutdown, the worker that stayed gave up partitions only in part: an
    // eager protocol would have revoked all 8 at the first scale-out.
    let log = driftwatch_tests::worker::strip_ansi(
        &std::fs::read_to_string(&first.log).unwrap_or_default(),
    );
    assert!(
        log.contains("protocol=\"consumer\""),
        "worker one did not run the consumer protocol; log {}",
        first.log.display()
    );
    let from_standby: u64 = logs
        .iter()
        .flat_map(|l| {
            driftwatch_tests::worker::strip_ansi(&std::fs::read_to_string(l).unwrap_or_default())
                .lines()
                .filter(|l| l.contains("monitor state restored"))
                .filter_map(|l| driftwatch_tests::worker::log_field(l, "from_standby"))
                .collect::<Vec<_>>()
        })
        .sum();
    assert!(
        from_standby > 0,
        "no monitor partition was restored from a standby copy; logs {logs:?}"
    );
    let revocations = join_revocations(&first.log);
    assert!(
        !revocations.is_empty(),
        "worker one gave up no partition while three more joined; log {}",
        first.log.display()
    );
    assert!(
        revocations.iter().all(|r| r.len() < WIDE as usize),
        "worker one gave up all its partitions at once: {revocations:?}; log {}",
        first.log.display()
    );
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !text.contains("only one input of this partition was assigned"),
            "a member held one input of a partition without the other; log {}",
            log.display()
        );
    }
    for w in [second, first] {
        let status = w.terminate();
        assert!(status.success(), "worker exit {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_at_named_points_lose_and_duplicate_nothing() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let setup = chaos_settings().await;
    let s = &setup.0;
    let scenario = Scenario::generate(24, 50_000, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    // Slow enough that records still flow when the points that need them are armed.
    let producing = produce_in_background(s, &scenario, 40, Duration::from_millis(600));
    let mut logs = Vec::new();
    // Each incarnation is armed at one point and must die exactly there; the next one (the
    // same static member) restores what the dead one committed. The restore points come last,
    // when the changelogs hold state; how much depends on how many commits the earlier
    // incarnations made before their kills (as few as a handful of records), so the restore
    // kill comes at the first record applied, which every restore of non-empty state reaches.
    for (i, point) in [
        "transaction.records_sent@2",
        "dead_letter.sent@1",
        "transaction.offsets_sent@2",
        "rebalance.restored@1",
        "restore.record@1",
    ]
    .into_iter()
    .enumerate()
    {
        let name = point.split('@').next().unwrap_or(point);
        let worker = Worker::start_with_fault(&setup, &format!("a{i}"), Some("a"), Some(point));
        logs.push(worker.log.clone());
        worker.dies_at(name, Duration::from_secs(60));
    }
    let worker = Worker::start(&setup, "a-last", Some("a"));
    logs.push(worker.log.clone());
    producing.await.expect("producer");
    assert_exact(s, PARTITIONS, &scenario, &reference, &logs);
    let status = worker.terminate();
    assert!(status.success(), "worker exit {status}");
}
