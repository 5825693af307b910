//! The join's local state store across restarts, on the real broker: workers run as
//! `driftwatch run --role all` processes with `join.state.dir` set and a 1 MiB budget (nearly
//! everything on disk).
//! - Stopped cleanly (SIGTERM) after the final commit, a worker seals its stores; restarted,
//!   it resumes every partition from its store and replays only the changelog written after
//!   the seal (the `join state restored` line: `resumed=` all partitions, `records=` a small
//!   fraction of the `entries=` restored), and the counts stay exact.
//! - Killed (SIGKILL), it leaves stores without a checkpoint: restarted, it warns once per
//!   partition, rebuilds from the whole changelog, and the counts stay exact.
//!
//! - Labels days late (2-day timeouts, 36 h of predictions, a 2 MiB budget), the worker
//!   SIGKILLed twice and stopped once with SIGTERM midway: exact counts; the restore lines show
//!   the restore time with and without an intact store. `DRIFTWATCH_LOCAL_STORE_PREDICTIONS`
//!   sets its size (default 200 000).
//! - Its store failing as on a full disk (the `state.write` failure point), a worker stops
//!   with an error without committing; the next start rebuilds, and the counts stay exact.
//!
//! Exact: the committed partials equal the offline reference of the scenario.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use driftwatch_tests::monitor_outputs::{create_topics_of, MONITOR_TOML};
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{produce_in_background, Scenario};
use driftwatch_tests::worker::{log_field, log_text, Worker};
use driftwatch_tests::{settings, unique};
use driftwatch_worker::settings::Settings;

const PARTITIONS: i32 = 4;
const BUDGET: &str = "1MiB";

async fn setup() -> ((Settings, PathBuf), PathBuf) {
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, PARTITIONS).await;
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(&config, MONITOR_TOML).expect("worker configuration file");
    let state = std::env::temp_dir().join(unique("driftwatch-local-store"));
    ((s, config), state)
}

fn start(setup: &(Settings, PathBuf), state: &Path, name: &str) -> Worker {
    Worker::start_with(
        setup,
        name,
        Some("a"),
        None,
        &[
            ("DRIFTWATCH__JOIN__STATE__DIR", state.display().to_string()),
            ("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", BUDGET.to_string()),
        ],
    )
}

/// The first line of `log` containing `needle`, waiting up to `within` for it.
fn wait_for_line(log: &Path, needle: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        if let Some(l) = log_text(log).lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no `{needle}` in {} within {within:?}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs a scenario through a worker that `stop` stops midway and that is then restarted: the
/// restarted worker's first restore line, its log text and path, once the counts are exact.
async fn run_with_restart(
    stop: impl FnOnce(Worker, &Path),
    seed: u64,
) -> (String, String, PathBuf) {
    let (setup, state) = setup().await;
    let s = &setup.0;
    let scenario = Scenario::generate(seed, 20_000, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    // Produced while the worker runs, stops and restarts (so no input ever looks idle to it).
    let producing = produce_in_background(s, &scenario, 40, Duration::from_millis(500));
    let first = start(&setup, &state, "first");
    let first_log = first.log.clone();
    wait_for_line(&first_log, "join state restored", Duration::from_secs(120));
    tokio::time::sleep(Duration::from_secs(6)).await;
    stop(first, &first_log);
    let second = start(&setup, &state, "second");
    let restored = wait_for_line(&second.log, "join state restored", Duration::from_secs(180));
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(reference.total(), Duration::from_secs(240));
    assert_reference(&reader.seen, &reference, &[first_log, second.log.clone()]);
    let log = second.log.clone();
    let status = second.terminate();
    assert!(status.success(), "the worker stopped with {status}");
    let _ = std::fs::remove_dir_all(&state);
    (restored, log_text(&log), log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_replays_only_the_changelog_tail() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let mut sealed_entries = 0;
    let (restored, _, log) = run_with_restart(
        |w, log| {
            let status = w.terminate();
            assert!(status.success(), "the worker stopped with {status}");
            let sealed = wait_for_line(log, "join state stores sealed", Duration::ZERO);
            sealed_entries = log_field(&sealed, "entries").unwrap_or(0);
        },
        61,
    )
    .await;
    let resumed = log_field(&restored, "resumed");
    let records = log_field(&restored, "records").unwrap_or(u64::MAX);
    let entries = log_field(&restored, "entries").unwrap_or(0);
    eprintln!("restart after SIGTERM: {restored}");
    assert_eq!(
        resumed,
        Some(PARTITIONS as u64),
        "every partition resumed from its store: {restored}; log {}",
        log.display()
    );
    assert!(
        sealed_entries > 1_000,
        "the stores held the state: {sealed_entries} entries sealed"
    );
    assert_eq!(
        entries, sealed_entries,
        "the resumed state is the sealed one: {restored}"
    );
    assert!(
        records * 100 < entries,
        "only the changelog's tail replayed: {restored}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_rebuilds_its_stores_and_stays_exact() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let (restored, text, log) = run_with_restart(|w, _| w.kill_nine(), 62).await;
    eprintln!("restart after SIGKILL: {restored}");
    assert_eq!(
        log_field(&restored, "resumed"),
        Some(0),
        "nothing resumed: {restored}; log {}",
        log.display()
    );
    let records = log_field(&restored, "records").unwrap_or(0);
    assert!(records > 1_000, "the whole changelog replayed: {restored}");
    let warnings = text
        .lines()
        .filter(|l| l.contains("join state store not usable"))
        .count();
    assert_eq!(
        warnings,
        PARTITIONS as usize,
        "one warning per partition; log {}",
        log.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_worker_without_committing_and_the_next_start_resumes() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let (setup, state) = setup().await;
    let s = &setup.0;
    let scenario = Scenario::generate(63, 20_000, driftwatch_tests::now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    let producing = produce_in_background(s, &scenario, 40, Duration::from_millis(500));
    let env = [
        ("DRIFTWATCH__JOIN__STATE__DIR", state.display().to_string()),
        ("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", BUDGET.to_string()),
    ];
    // Every store write fails from the 5th on, as on a full disk.
    let mut full = Worker::start_with(&setup, "full", Some("a"), Some("state.write@5"), &env);
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Ok(Some(status)) = full.child.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not stop on a failing store; log {}",
            full.log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    use std::os::unix::process::ExitStatusExt;
    assert!(
        !status.success() && status.signal().is_none(),
        "a fatal stop, not {status}; log {}",
        full.log.display()
    );
    let text = log_text(&full.log);
    assert!(
        text.contains("No space left on device") && text.contains("stopping without committing"),
        "the stop names the store failure; log {}",
        full.log.display()
    );
    let next = start(&setup, &state, "next");
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(reference.total(), Duration::from_secs(240));
    assert_reference(
        &reader.seen,
        &reference,
        &[full.log.clone(), next.log.clone()],
    );
    let status = next.terminate();
    assert!(status.success(), "the worker stopped with {status}");
    let _ = std::fs::remove_dir_all(&state);
}

/// Label delay scale of the multi-day test: the timeouts become 2 days (see
/// [`Scenario::generate_timed`]).
const DAYS_SCALE: i64 = 288;

/// Predictions of the multi-day test: `DRIFTWATCH_LOCAL_STORE_PREDICTIONS`, default 200 000.
fn days_predictions() -> usize {
    std::env::var("DRIFTWATCH_LOCAL_STORE_PREDICTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
}

/// The first restore line of `worker`'s log, and the worker once it has run `run` after it.
async fn restored_then_run(worker: &Worker, run: Duration) -> String {
    let line = wait_for_line(&worker.log, "join state restored", Duration::from_secs(600));
    tokio::time::sleep(run).await;
    line
}

/// Predictions spread over 36 hours of event time, labels up to 3 days after them (2-day
/// timeouts), a 2 MiB budget: nearly all state on disk. The worker is SIGKILLed twice (each
/// restart rebuilds from the changelog), then stopped with SIGTERM and restarted (resumed from
/// its store); the counts are exact. The restore lines give the restore time with and without
/// an intact store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_days_late_survive_two_kills_exactly() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let (setup, state) = setup().await;
    let s = &setup.0;
    let n = days_predictions();
    let spacing = (36 * 3_600_000 / n as i64).max(1);
    let start_ms = driftwatch_tests::now_ms() - 6 * 86_400_000;
    let scenario = Scenario::generate_timed(64, n, start_ms, spacing, DAYS_SCALE);
    let reference = Outcomes::reference(&scenario);
    let timeout = format!(
        "{}ms",
        driftwatch_tests::scenario::LABEL_TIMEOUT_MS * DAYS_SCALE
    );
    let env = [
        ("DRIFTWATCH__JOIN__STATE__DIR", state.display().to_string()),
        ("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", "2MiB".to_string()),
        ("DRIFTWATCH__JOIN__LABEL_TIMEOUT", timeout.clone()),
        ("DRIFTWATCH__JOIN__ORPHAN_TIMEOUT", timeout),
    ];
    let start = |name: &str| Worker::start_with(&setup, name, Some("a"), None, &env);
    let producing = produce_in_background(s, &scenario, 120, Duration::from_millis(500));
    let mut logs = Vec::new();
    let mut lines = Vec::new();
    let mut worker = start("days-0");
    for k in 1..=2 {
        logs.push(worker.log.clone());
        lines.push(restored_then_run(&worker, Duration::from_secs(8)).await);
        worker.kill_nine();
        worker = start(&format!("days-{k}"));
    }
    logs.push(worker.log.clone());
    lines.push(restored_then_run(&worker, Duration::from_secs(8)).await);
    let status = worker.terminate();
    assert!(status.success(), "the worker stopped with {status}");
    let worker = start("days-3");
    logs.push(worker.log.clone());
    lines.push(restored_then_run(&worker, Duration::ZERO).await);
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(reference.total(), Duration::from_secs(1_200));
    for (log, line) in logs.iter().zip(&lines) {
        eprintln!(
            "{}: resumed={:?} records={:?} entries={:?} {}",
            log.display(),
            log_field(line, "resumed"),
            log_field(line, "records"),
            log_field(line, "entries"),
            line.split(" seconds=").nth(1).unwrap_or("?")
        );
    }
    assert_reference(&reader.seen, &reference, &logs);
    assert_eq!(
        log_field(&lines[1], "resumed"),
        Some(0),
        "rebuilt after a kill: {}",
        lines[1]
    );
    assert_eq!(
        log_field(&lines[2], "resumed"),
        Some(0),
        "rebuilt after a kill: {}",
        lines[2]
    );
    assert_eq!(
        log_field(&lines[3], "resumed"),
        Some(PARTITIONS as u64),
        "resumed after SIGTERM: {}",
        lines[3]
    );
    let status = worker.terminate();
    assert!(status.success(), "the worker stopped with {status}");
    let _ = std::fs::remove_dir_all(&state);
}
