//! Standby replicas of the join state (`join.standby_replicas`) on the real broker: two
//! workers (`driftwatch run --role all`, the KIP-848 protocol, a local store each with a
//! 1 MiB budget) each follow the other's partitions from the changelog. The one that leaves
//! starts first and owns every partition until the other joins, so the other never held the
//! partitions it will take. The first leaves (SIGTERM, a scale-in): the other takes its
//! partitions and resumes them from its standby stores, replaying only the changelog's tail
//! (its `join state restored` line: `resumed=` both moved partitions, `records=` well below
//! the `entries=` restored), and the counts stay exact against the offline reference. The
//! other's joining (a scale-out) is warm too: it catches its standbys up before it joins the
//! group (`join.standby_warm_up`), so the partitions moved to it resume the same way.
//!
//! The monitor's standbys (`monitor.standby_replicas`, the same count) are on too: the monitor
//! partitions that move at the scale-in are restored from the copies the staying worker kept
//! (its `monitor state restored` line: `from_standby=` every moved partition).
//!
//! `DRIFTWATCH_STANDBY_PREDICTIONS` sets the scenario's size (default 20 000);
//! `DRIFTWATCH_STANDBY_REPLICAS=0` runs the same without standbys, for comparison: the moved
//! partitions are then rebuilt from the whole changelog (`resumed=0`). The test prints the
//! moved partitions' restore line either way.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftwatch_tests::monitor_outputs::{create_topics_of, MONITOR_TOML};
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{produce_in_background, Scenario};
use driftwatch_tests::worker::{log_field, log_text, Worker};
use driftwatch_tests::{settings, unique};
use driftwatch_worker::settings::{GroupProtocol, Settings};

const PARTITIONS: i32 = 4;

/// The lines of `log` containing `needle`, once `enough` holds of them (waiting up to `within`).
fn wait_for_lines(
    log: &Path,
    needle: &str,
    within: Duration,
    enough: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let lines: Vec<String> = log_text(log)
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect();
        if enough(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no such `{needle}` in {} within {within:?}: {lines:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The time of day of a log line (its leading RFC 3339 UTC timestamp), in seconds.
fn seconds_of_day(line: &str) -> Option<f64> {
    let time = line.get(11..)?.split('Z').next()?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Whether a `join standby replicas followed` line names two partitions.
fn follows_two(line: &str) -> bool {
    line.split("partitions=")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .is_some_and(|list| list.matches(',').count() == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_moved_to_its_standby_replays_only_the_changelog_tail() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.group_protocol = GroupProtocol::Consumer;
    create_topics_of(&mut s, PARTITIONS).await;
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(&config, MONITOR_TOML).expect("worker configuration file");
    let base = std::env::temp_dir().join(unique("driftwatch-standby"));
    let setup = (s, config);
    let s = &setup.0;
    let env_number = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let predictions = env_number("DRIFTWATCH_STANDBY_PREDICTIONS", 20_000);
    let replicas = env_number("DRIFTWATCH_STANDBY_REPLICAS", 1);
    let scenario = Scenario::generate(71, predictions, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    let producing = produce_in_background(s, &scenario, 40, Duration::from_millis(500));
    let start = |name: &str| {
        let dir: PathBuf = base.join(name);
        Worker::start_with(
            &setup,
            name,
            None,
            None,
            &[
                ("DRIFTWATCH__JOIN__STATE__DIR", dir.display().to_string()),
                ("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", "1MiB".to_string()),
                ("DRIFTWATCH__JOIN__STANDBY_REPLICAS", replicas.to_string()),
                (
                    "DRIFTWATCH__MONITOR__STANDBY_REPLICAS",
                    replicas.to_string(),
                ),
            ],
        )
    };
    let leaving = start("leaving");
    wait_for_lines(
        &leaving.log,
        "join state restored",
        Duration::from_secs(120),
        |lines| !lines.is_empty(),
    );
    let staying = start("staying");
    let follows = |log: &Path| {
        wait_for_lines(
            log,
            "join standby replicas followed",
            Duration::from_secs(180),
            |lines| lines.last().is_some_and(|l| follows_two(l)),
        )
    };
    if replicas > 0 {
        // Scale-out: the joining worker caught its standbys up before it joined the group
        // (`join.standby_warm_up`), so the partitions moved to it resume warm too.
        let joined = wait_for_lines(
            &staying.log,
            "join state restored",
            Duration::from_secs(120),
            |lines| !lines.is_empty(),
        );
        let first = &joined[0];
        eprintln!("partitions moved at scale-out: {first}");
        let records = log_field(first, "records").unwrap_or(u64::MAX);
        let entries = log_field(first, "entries").unwrap_or(0);
        assert_eq!(
            log_field(first, "resumed"),
            Some(2),
            "both partitions moved at scale-out resumed from warmed standbys: {first}"
        );
        assert!(
            entries > 500 && records * 4 < entries,
            "only the changelog's tail replayed at scale-out: {first}"
        );
        follows(&staying.log);
        follows(&leaving.log);
    } else {
        wait_for_lines(
            &staying.log,
            "join state restored",
            Duration::from_secs(120),
            |lines| !lines.is_empty(),
        );
    }
    // Input keeps coming: the standbys follow what the owners write meanwhile.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let restores_before =
        wait_for_lines(&staying.log, "join state restored", Duration::ZERO, |_| {
            true
        })
        .len();
    let monitor_restores_before = wait_for_lines(
        &staying.log,
        "monitor state restored",
        Duration::ZERO,
        |_| true,
    )
    .len();
    let leaving_log = leaving.log.clone();
    let status = leaving.terminate();
    assert!(status.success(), "the leaving worker stopped with {status}");
    let restores = wait_for_lines(
        &staying.log,
        "join state restored",
        Duration::from_secs(120),
        |lines| lines.len() > restores_before,
    );
    let moved = &restores[restores_before];
    // The moved partitions make no progress from the leaving worker's last commit (its
    // stores sealed right after it) until their restore ends here.
    let sealed = wait_for_lines(
        &leaving_log,
        "join state stores sealed",
        Duration::ZERO,
        |_| true,
    );
    let pause = sealed
        .last()
        .and_then(|l| Some(seconds_of_day(moved)? - seconds_of_day(l)?));
    eprintln!("partitions moved (standby replicas {replicas}): paused {pause:?} s; {moved}");
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(reference.total(), Duration::from_secs(240));
    assert_reference(
        &reader.seen,
        &reference,
        &[staying.log.clone(), leaving_log],
    );
    let resumed = log_field(moved, "resumed");
    let records = log_field(moved, "records").unwrap_or(u64::MAX);
    let entries = log_field(moved, "entries").unwrap_or(0);
    assert!(entries > 500, "the moved partitions held state: {moved}");
    if replicas == 0 {
        assert_eq!(resumed, Some(0), "rebuilt without standbys: {moved}");
    } else {
        assert_eq!(
            resumed,
            Some(2),
            "both moved partitions resumed from their standby: {moved}; log {}",
            staying.log.display()
        );
        assert!(
            records * 4 < entries,
            "only the changelog's tail replayed: {moved}"
        );
    }
    // The monitor's partitions moved too: with standbys, restored from the copies this
    // worker kept (`from_standby=` every partition of the line), the changelog's tail only.
    let monitor_restores = wait_for_lines(
        &staying.log,
        "monitor state restored",
        Duration::from_secs(60),
        |lines| lines.len() > monitor_restores_before,
    );
    let monitor_moved = &monitor_restores[monitor_restores_before];
    eprintln!("monitor partitions moved (standby replicas {replicas}): {monitor_moved}");
    let moved_count = monitor_moved
        .split_once("partitions=[")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map_or(0, |(list, _)| {
            list.split(',').filter(|p| !p.trim().is_empty()).count()
        });
    assert!(moved_count > 0, "monitor partitions moved: {monitor_moved}");
    let expected_from_standby = if replicas == 0 { 0 } else { moved_count };
    assert_eq!(
        log_field(monitor_moved, "from_standby"),
        Some(expected_from_standby as u64),
        "monitor partitions restored from standby copies: {monitor_moved}"
    );
    let status = staying.terminate();
    assert!(status.success(), "the staying worker stopped with {status}");
    let _ = std::fs::remove_dir_all(&base);
}
