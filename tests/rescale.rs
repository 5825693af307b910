//! How long each partition stops while the join group is rescaled, per rebalancing mode: a
//! benchmark on the real broker, not part of the test command (`#[ignore]`: run it with
//! `cargo test --release -p driftwatch-tests --test rescale -- --ignored --nocapture`).
//!
//! For each mode — `classic` (eager), `consumer` (KIP-848 incremental), and `consumer` with
//! `join.standby_replicas = 1` and `monitor.standby_replicas = 1` — the same scenario on 8 partitions: `DRIFTWATCH_RESCALE_PREDICTIONS`
//! predictions (default 2 200 000) within about 40 minutes of event time, their labels 0–24 h
//! later (2-day timeouts, a few 2–3 days late). The predictions are produced first and one
//! worker (a local store with a 1 MiB budget, `DRIFTWATCH_RESCALE_BUDGET`: nearly every entry on disk) takes them in, so
//! they are all pending when the rescale starts; the labels are then produced over about three
//! minutes while the workers go 1 → 2 → 4 → 2 (SIGTERM) and one more is SIGKILLed. From the
//! workers' `partitions revoked` / `partitions assigned` lines, for every assignment of a
//! partition: whether it moved to another worker, and how long it had no owner processing it
//! (from the start of its revocation — the line's `seconds` before it —, or the SIGTERM or
//! SIGKILL of its owner, to the end of its restore on the new owner). Input is waiting
//! throughout. Each step waits until the workers it started own partitions (with standbys they
//! first warm up, `join.standby_warm_up`). The groups' session timeout is 10 s
//! (`kafka.session_timeout`): it bounds how soon a SIGKILLed worker's partitions move. The
//! table is printed, then the counts are asserted exact against the offline reference at the
//! end of every mode.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driftwatch_tests::monitor_outputs::{create_topics_of, MONITOR_TOML};
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{
    produce_in_background, produce_records, Scenario, Side, LABEL_TIMEOUT_MS,
};
use driftwatch_tests::worker::{log_text, Worker};
use driftwatch_tests::{settings, unique};
use driftwatch_worker::settings::{GroupProtocol, Settings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

const PARTITIONS: i32 = 8;

/// Label delays `DAYS_SCALE` times the default scenario's: 2-day timeouts, labels up to a day
/// late (see [`Scenario::generate_timed`]).
const DAYS_SCALE: i64 = 288;

/// Sum of the join group's committed offsets on the predictions topic, and of the topic's
/// high watermarks, read by `reader` (a consumer of the join group that never subscribes).
fn predictions_committed(reader: &BaseConsumer, s: &Settings) -> (i64, i64) {
    let topic = &s.topics.predictions;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    let committed = reader
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|c| {
            c.elements()
                .iter()
                .filter_map(|e| e.offset().to_raw())
                .filter(|o| *o >= 0)
                .sum()
        })
        .unwrap_or(0);
    let end = (0..PARTITIONS)
        .filter_map(|p| {
            reader
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()
        })
        .map(|(_, high)| high)
        .sum();
    (committed, end)
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

fn now_of_day() -> f64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    now % 86_400.0
}

/// The `seconds=` field of a log line.
fn seconds_field(line: &str) -> Option<f64> {
    line.split(" seconds=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn partitions_of(line: &str) -> Vec<i32> {
    line.split("partitions=[")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .map(|list| {
            list.split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One ownership change of a partition, from the logs.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Revoked {
        worker: String,
    },
    /// Told to stop (SIGTERM, logging no revocation) or SIGKILLed.
    Killed {
        worker: String,
    },
    Assigned {
        worker: String,
        resumed: bool,
    },
}

/// The join stage's revocations and assignments per partition, in time order.
fn timeline(logs: &[(String, PathBuf)], kills: &[(String, f64)]) -> Vec<(f64, i32, Change)> {
    let mut out = Vec::new();
    for (worker, log) in logs {
        let text = log_text(log);
        let mut resumed_next = false;
        for line in text.lines().filter(|l| l.contains("stage=\"join\"")) {
            let Some(t) = seconds_of_day(line) else {
                continue;
            };
            if line.contains("join state restored") {
                resumed_next = !line.contains("resumed=0");
            } else if line.contains("partitions revoked") {
                // From when the revocation began: the commit and sealing before the line.
                let t = t - seconds_field(line).unwrap_or(0.0);
                for p in partitions_of(line) {
                    let worker = worker.clone();
                    out.push((t, p, Change::Revoked { worker }));
                }
            } else if line.contains("partitions assigned") {
                for p in partitions_of(line) {
                    let worker = worker.clone();
                    let resumed = resumed_next;
                    out.push((t, p, Change::Assigned { worker, resumed }));
                }
                resumed_next = false;
            }
        }
    }
    for (worker, t) in kills {
        for p in 0..PARTITIONS {
            let worker = worker.clone();
            out.push((*t, p, Change::Killed { worker }));
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Per assignment: (time, partition, new owner, moved, paused s, resumed).
fn pauses(timeline: &[(f64, i32, Change)]) -> Vec<(f64, i32, String, bool, f64, bool)> {
    let mut owner: BTreeMap<i32, String> = BTreeMap::new();
    let mut released: BTreeMap<i32, (f64, String)> = BTreeMap::new();
    let mut out = Vec::new();
    for (t, p, change) in timeline {
        match change {
            Change::Revoked { worker } => {
                released.insert(*p, (*t, worker.clone()));
                owner.remove(p);
            }
            Change::Killed { worker } => {
                if owner.get(p) == Some(worker) {
                    released.insert(*p, (*t, worker.clone()));
                    owner.remove(p);
                }
            }
            Change::Assigned { worker, resumed } => {
                if let Some((since, from)) = released.remove(p) {
                    out.push((*t, *p, worker.clone(), from != *worker, t - since, *resumed));
                }
                owner.insert(*p, worker.clone());
            }
        }
    }
    out
}

async fn run_mode(
    name: &str,
    protocol: GroupProtocol,
    replicas: usize,
    predictions: usize,
    rescale: bool,
) {
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.group_protocol = protocol;
    create_topics_of(&mut s, PARTITIONS).await;
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(&config, MONITOR_TOML).expect("worker configuration file");
    let base = std::env::temp_dir().join(unique("driftwatch-rescale"));
    let setup = (s, config);
    let s = &setup.0;
    // Predictions within about 40 minutes of event time, three days ago; labels up to a day
    // after them (a few 2–3 days: late), so nearly every prediction is pending until the
    // labels come.
    let spacing = (2_400_000 / predictions as i64).max(1);
    let start_ms = driftwatch_tests::now_ms() - 3 * 86_400_000;
    let scenario = Scenario::generate_timed(81, predictions, start_ms, spacing, DAYS_SCALE);
    let reference = Outcomes::reference(&scenario);
    let predictions_end = start_ms + predictions as i64 * spacing;
    let split = scenario
        .records
        .iter()
        .position(|r| r.time > predictions_end)
        .unwrap_or(scenario.records.len());
    let (first, _) = scenario.records.split_at(split);
    let side = |want: Side| first.iter().filter(|r| r.side == want).count();
    let pending = side(Side::Predictions).saturating_sub(side(Side::Labels));
    produce_records(s, first).await;
    let labels = Scenario {
        records: scenario.records[split..].to_vec(),
        expected: BTreeMap::new(),
        confusion: BTreeMap::new(),
        garbage: 0,
    };
    let timeout = format!("{}ms", LABEL_TIMEOUT_MS * DAYS_SCALE);
    // `DRIFTWATCH_RESCALE_BUDGET`: the workers' `join.state.memory_budget` (default 1MiB:
    // nearly every entry, active or standby, on disk).
    let budget = std::env::var("DRIFTWATCH_RESCALE_BUDGET").unwrap_or_else(|_| "1MiB".into());
    let start = |worker: &str| {
        Worker::start_with(
            &setup,
            worker,
            None,
            None,
            &[
                (
                    "DRIFTWATCH__JOIN__STATE__DIR",
                    base.join(worker).display().to_string(),
                ),
                ("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", budget.clone()),
                ("DRIFTWATCH__JOIN__STANDBY_REPLICAS", replicas.to_string()),
                (
                    "DRIFTWATCH__MONITOR__STANDBY_REPLICAS",
                    replicas.to_string(),
                ),
                ("DRIFTWATCH__JOIN__LABEL_TIMEOUT", timeout.clone()),
                ("DRIFTWATCH__JOIN__ORPHAN_TIMEOUT", timeout.clone()),
                ("DRIFTWATCH__KAFKA__SESSION_TIMEOUT", "10s".to_string()),
                // The scenario's event time is days behind the clock: once both inputs of a
                // task are caught up and quiet for this long, its watermark moves to the
                // clock and every pending prediction expires. The test workers' 3 s let the
                // pause between the intake and the first labels do that (seen once: 2.15 M
                // predictions expired before their labels); the default (30 s) does not,
                // and still ends the run's last pending predictions once the labels stop.
                ("DRIFTWATCH__JOIN__IDLE_TIMEOUT", "30s".to_string()),
            ],
        )
    };
    let w0 = start("w0");
    // The first worker takes every prediction in (and commits) before the group changes.
    let reader: BaseConsumer =
        driftwatch_worker::clients::consumer_config(&s.kafka, &s.kafka.join_group_id)
            .create()
            .expect("offset reader");
    let taken_in = std::time::Instant::now();
    loop {
        let (committed, end) = predictions_committed(&reader, s);
        if end > 0 && committed >= end {
            break;
        }
        assert!(
            taken_in.elapsed() < Duration::from_secs(1200),
            "the first worker did not take the predictions in: {committed} of {end}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!(
        "{name}: about {pending} predictions pending after {:.0} s; labels come now",
        taken_in.elapsed().as_secs_f64()
    );
    // Over about three minutes: the SIGKILL at the end lands while labels still come, so the
    // killed worker dies with work in hand (an open transaction more often than not).
    let producing = produce_in_background(s, &labels, 180, Duration::from_millis(1000));
    let step = Duration::from_secs(15);
    let mut logs: Vec<(String, PathBuf)> = vec![("w0".to_string(), w0.log.clone())];
    let mut kills = Vec::new();
    if rescale {
        tokio::time::sleep(step).await;
        let w1 = start("w1");
        owns_partitions(&w1.log).await;
        tokio::time::sleep(step).await;
        let w2 = start("w2");
        let w3 = start("w3");
        owns_partitions(&w2.log).await;
        owns_partitions(&w3.log).await;
        tokio::time::sleep(step).await;
        for (n, w) in [("w1", &w1), ("w2", &w2), ("w3", &w3)] {
            logs.push((n.to_string(), w.log.clone()));
        }
        // A worker that leaves logs no revocation: its partitions are released when it is
        // told to stop.
        let w3_left_at = now_of_day();
        assert!(w3.terminate().success());
        let w2_left_at = now_of_day();
        assert!(w2.terminate().success());
        tokio::time::sleep(step).await;
        let killed_at = now_of_day();
        w1.kill_nine();
        kills.push(("w2".to_string(), w2_left_at));
        kills.push(("w3".to_string(), w3_left_at));
        kills.push(("w1".to_string(), killed_at));
    }
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(reference.total(), Duration::from_secs(600));
    let paths: Vec<PathBuf> = logs.iter().map(|(_, p)| p.clone()).collect();
    assert!(w0.terminate().success());
    logs.sort();
    // The pauses first: they are the benchmark's figures, whatever the counts say.
    println!("\n{name}: partition, new owner, moved, paused s, resumed from a local store");
    for (t, p, worker, moved, paused, resumed) in pauses(&timeline(&logs, &kills)) {
        println!("  {name:<20} t={t:>9.1} p{p} → {worker} moved={moved:<5} paused={paused:>6.2} s resumed={resumed}");
    }
    let count = |line: &str| -> usize {
        paths
            .iter()
            .map(|p| log_text(p).matches(line).count())
            .sum()
    };
    println!(
        "  {name:<20} fenced dead writers: {} holding changelog records, {} holding only offsets",
        count("fenced the writer of a transaction left open"),
        count("fenced the last writer of a partition whose committed offsets stay pending")
    );
    assert_reference(&reader.seen, &reference, &paths);
    let _ = std::fs::remove_dir_all(&base);
}

/// Waits (up to 5 minutes) until the worker logging to `log` owns join partitions.
async fn owns_partitions(log: &std::path::Path) {
    let started = std::time::Instant::now();
    while !log_text(log).contains("partitions assigned stage=\"join\"") {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{} owns no join partition after 5 minutes",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run by hand with --ignored --nocapture"]
async fn per_partition_pauses_of_a_rescale_in_each_mode() {
    assert!(
        driftwatch_tests::broker_available(),
        "the benchmark needs the broker (scripts/kafka start)"
    );
    let predictions = std::env::var("DRIFTWATCH_RESCALE_PREDICTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_200_000);
    // `DRIFTWATCH_RESCALE_MODES`: a comma-separated subset of the modes (default: all three).
    let modes = std::env::var("DRIFTWATCH_RESCALE_MODES").unwrap_or_default();
    let runs = |mode: &str| modes.is_empty() || modes.split(',').any(|m| m.trim() == mode);
    // `single` (not in the default set): the same scenario with one worker throughout, which
    // tells a fault of the rescale from one of the scenario.
    if !modes.is_empty() && runs("single") {
        run_mode("single", GroupProtocol::Consumer, 0, predictions, false).await;
    }
    if runs("eager") {
        run_mode("eager", GroupProtocol::Classic, 0, predictions, true).await;
    }
    if runs("incremental") {
        run_mode("incremental", GroupProtocol::Consumer, 0, predictions, true).await;
    }
    if runs("incremental+standby") {
        run_mode(
            "incremental+standby",
            GroupProtocol::Consumer,
            1,
            predictions,
            true,
        )
        .await;
    }
}

#[test]
fn pauses_are_read_from_revocations_kills_and_assignments() {
    let a = |worker: &str, resumed| Change::Assigned {
        worker: worker.into(),
        resumed,
    };
    let timeline = vec![
        (1.0, 0, a("w0", false)),
        (
            5.0,
            0,
            Change::Revoked {
                worker: "w0".into(),
            },
        ),
        (6.5, 0, a("w1", true)),
        (
            9.0,
            0,
            Change::Killed {
                worker: "w0".into(),
            },
        ),
        (
            10.0,
            0,
            Change::Killed {
                worker: "w1".into(),
            },
        ),
        (12.0, 0, a("w0", false)),
    ];
    let got = pauses(&timeline);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].2, "w1");
    assert!(got[0].3 && (got[0].4 - 1.5).abs() < 1e-9 && got[0].5);
    // The kill of a worker that no longer owned the partition does not count.
    assert!((got[1].4 - 2.0).abs() < 1e-9);
    assert_eq!(
        partitions_of("x partitions=[0, 1, 7] committed=true"),
        vec![0, 1, 7]
    );
    assert_eq!(
        seconds_field("x partitions=[0] committed=true lost=false seconds=2.5 y"),
        Some(2.5)
    );
}
