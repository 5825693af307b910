//! Chaos tests of exactly-once processing on the real broker, through both stages: workers run
//! as `driftwatch run --role all` processes (join and monitor in one process, as deployed),
//! are killed with SIGKILL at random moments and restarted, or scaled 1 → 3 → 1, while traffic
//! flows. Afterwards, read as `read_committed` consumers:
//! - the partials must sum to exactly the offline reference of the scenario: per model,
//!   matched, expired unlabeled, orphan, duplicate and late counts and every confusion cell;
//! - the monitor's latest metrics over a window spanning the whole run must count exactly the
//!   predictions, matched outcomes and correct ones of the committed partials of its buckets
//!   (its windows, restored from its changelog after each kill or hand-over, merged every
//!   partial once);
//! - no drift event id and no retrain event id appears twice (each model's decisions were made
//!   by one owner at a time, from state that continued exactly), and the drifting model has
//!   its drift and retrain events.
//!
//! One input lost, or counted twice, fails the test. The default run is short (50 000
//! predictions); `DRIFTWATCH_CHAOS_FULL=1` runs 1 000 000 predictions with more kills.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_codec::from_avro;
use driftwatch_core::{DriftEvent, DriftState, ModelMetrics, RetrainEvent};
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{produce_records, Scenario, LABEL_TIMEOUT_MS};
use driftwatch_tests::{create_topic, driftwatch_binary, settings, unique};
use driftwatch_worker::settings::Settings;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;
/// The monitor window that spans the whole run.
const WHOLE_RUN: &str = "30d";

fn full() -> bool {
    std::env::var("DRIFTWATCH_CHAOS_FULL").is_ok_and(|v| v == "1")
}

fn needs_broker() -> bool {
    if std::env::var_os("DRIFTWATCH_TEST_BOOTSTRAP").is_none() {
        eprintln!("skipped: needs the broker of scripts/kafka (run scripts/test)");
        return false;
    }
    true
}

/// Settings of one test and the configuration file its workers read (the monitor's detection
/// settings: lists are awkward in environment variables).
async fn chaos_settings() -> (Settings, PathBuf) {
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.join_group_id = unique("chaos-join");
    s.monitor.group_id = unique("chaos-monitor");
    let t = &mut s.topics;
    t.predictions = unique("chaos-predictions");
    t.ground_truth = unique("chaos-ground-truth");
    t.model_partials = unique("chaos-partials");
    t.dead_letter = unique("chaos-dead-letter");
    t.drift_events = unique("chaos-drift-events");
    t.retrain_events = unique("chaos-retrain-events");
    t.model_metrics = unique("chaos-model-metrics");
    for topic in [&t.predictions, &t.ground_truth, &t.model_partials] {
        create_topic(topic, PARTITIONS).await;
    }
    for topic in [
        &t.dead_letter,
        &t.drift_events,
        &t.retrain_events,
        &t.model_metrics,
    ] {
        create_topic(topic, 1).await;
    }
    // The scenario spans minutes of event time (hours in the full run): two-minute windows to
    // judge, one spanning the whole run to count; labels come within 5 minutes (or too late
    // for the 10-minute timeout), so buckets are complete 6 minutes behind the data.
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(
        &config,
        format!(
            r#"
[monitor]
evaluation_interval = "500ms"
metrics_interval = "1s"

[monitor.detection.default]
windows = ["2m", "{WHOLE_RUN}"]
maturity_ms = 360000

[monitor.detection.default.accuracy_drop]
window = "2m"

[monitor.detection.default.feature_drift]
window = "2m"
reference = "2m"
"#
        ),
    )
    .expect("worker configuration file");
    (s, config)
}

/// One `driftwatch run --role join` process.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    /// A worker; `instance` names a static group member with a stable transactional id, `None`
    /// a dynamic member with a random one.
    fn start(s: &(Settings, PathBuf), name: &str, instance: Option<&str>) -> Worker {
        let (s, config) = s;
        let t = &s.topics;
        let log = std::env::temp_dir().join(format!("{}-{name}.log", s.kafka.join_group_id));
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("worker log file");
        let child = Command::new(driftwatch_binary())
            .args(["run", "--role", "all", "--config"])
            .arg(config)
            .env(
                "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS",
                &s.kafka.bootstrap_servers,
            )
            .env("DRIFTWATCH__KAFKA__JOIN_GROUP_ID", &s.kafka.join_group_id)
            .env(
                "DRIFTWATCH__KAFKA__INSTANCE_ID",
                instance.unwrap_or_default(),
            )
            .env("DRIFTWATCH__TOPICS__PREDICTIONS", &t.predictions)
            .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", &t.ground_truth)
            .env("DRIFTWATCH__TOPICS__MODEL_PARTIALS", &t.model_partials)
            .env("DRIFTWATCH__TOPICS__DEAD_LETTER", &t.dead_letter)
            .env("DRIFTWATCH__MONITOR__GROUP_ID", &s.monitor.group_id)
            .env("DRIFTWATCH__TOPICS__DRIFT_EVENTS", &t.drift_events)
            .env("DRIFTWATCH__TOPICS__RETRAIN_EVENTS", &t.retrain_events)
            .env("DRIFTWATCH__TOPICS__MODEL_METRICS", &t.model_metrics)
            .env("DRIFTWATCH__HTTP__ENABLED", "false")
            .env(
                "DRIFTWATCH__JOIN__LABEL_TIMEOUT",
                format!("{LABEL_TIMEOUT_MS}ms"),
            )
            .env(
                "DRIFTWATCH__JOIN__ORPHAN_TIMEOUT",
                format!("{LABEL_TIMEOUT_MS}ms"),
            )
            .env("DRIFTWATCH__JOIN__ALLOWED_LATENESS", "30s")
            .env("DRIFTWATCH__JOIN__MAX_TASK_IDLE", "1s")
            .env("DRIFTWATCH__JOIN__IDLE_TIMEOUT", "3s")
            .env("DRIFTWATCH__JOIN__FLUSH_INTERVAL", "500ms")
            .env("DRIFTWATCH_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start driftwatch");
        Worker { child, log }
    }

    /// SIGKILL: no flush, no commit, no leaving the group.
    fn kill_nine(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status within 60 s.
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "worker did not stop within 60 s of SIGTERM; log {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Worker {
    /// A failing test leaves no worker behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn produce_in_background(
    s: &Settings,
    scenario: &Scenario,
    chunks: usize,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let s = s.clone();
    let records = scenario.records.clone();
    tokio::spawn(async move {
        let size = records.len().div_ceil(chunks);
        for chunk in records.chunks(size) {
            produce_records(&s, chunk).await;
            tokio::time::sleep(pause).await;
        }
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Every record of a one-partition topic as a `read_committed` consumer sees it now.
fn read_committed<T: driftwatch_codec::AvroRecord>(s: &Settings, topic: &str) -> Vec<T> {
    let consumer: BaseConsumer =
        driftwatch_worker::clients::consumer_config(&s.kafka, &unique("chaos-reader"))
            .create()
            .expect("reader");
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    if high <= low {
        return out;
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    // The end as this consumer sees it: the last stable offset, past which nothing is read.
    let mut idle = 0;
    while Instant::now() < deadline && idle < 10 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                let payload = m.payload().expect("payload");
                out.push(from_avro::<T>(payload).expect("output decodes"));
                if m.offset() + 1 >= high {
                    break;
                }
            }
            _ => idle += 1,
        }
    }
    out
}

/// Counts (predictions, matched, correct) of a metrics snapshot of the whole-run window.
fn snapshot_counts(m: &ModelMetrics) -> [u64; 3] {
    let accuracy = m
        .metrics
        .iter()
        .find(|(n, _)| n == "accuracy")
        .map_or(0.0, |(_, v)| *v);
    [
        m.predictions,
        m.labeled,
        (accuracy * m.labeled as f64).round() as u64,
    ]
}

/// What the committed partials of the buckets lying in `[start, end)` sum to, and the share of
/// the model's predictions those buckets hold.
fn partials_counts(reader: &PartialsReader, model: &str, start: i64, end: i64) -> ([u64; 3], f64) {
    let mut inside = [0u64; 3];
    let mut all = 0u64;
    for (&(s, width), b) in reader.buckets.get(model).into_iter().flatten() {
        all += b[0];
        if s >= start && s.saturating_add(width) <= end {
            for (x, y) in inside.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
    (inside, inside[0] as f64 / all.max(1) as f64)
}

/// Per model: the latest whole-run snapshot's counts, and what the committed partials of its
/// buckets sum to.
fn monitor_vs_partials(
    s: &Settings,
    reader: &PartialsReader,
) -> BTreeMap<String, ([u64; 3], [u64; 3], f64)> {
    let mut latest: BTreeMap<String, ModelMetrics> = BTreeMap::new();
    for m in read_committed::<ModelMetrics>(s, &s.topics.model_metrics) {
        if m.window == WHOLE_RUN {
            latest.insert(m.model_id.clone(), m);
        }
    }
    latest
        .into_iter()
        .map(|(model, m)| {
            let (expected, share) = partials_counts(reader, &model, m.window_start, m.window_end);
            (model, (snapshot_counts(&m), expected, share))
        })
        .collect()
}

/// Waits until the monitor's latest whole-run metrics count exactly what the committed partials
/// of their buckets hold (for every model, over most of its predictions: the window ends a
/// maturity delay behind the data), then checks its events: no id twice, and the drifting
/// model's drift and retrain events.
fn assert_monitor(s: &Settings, reader: &PartialsReader, logs: &[PathBuf]) {
    let models: BTreeSet<&String> = reader.buckets.keys().collect();
    let settled = |seen: &BTreeMap<String, ([u64; 3], [u64; 3], f64)>| {
        seen.len() == models.len()
            && seen
                .values()
                .all(|(got, want, share)| got == want && *share >= 0.9)
    };
    let deadline = Instant::now() + Duration::from_secs(if full() { 600 } else { 180 });
    let mut seen = monitor_vs_partials(s, reader);
    while !settled(&seen) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        seen = monitor_vs_partials(s, reader);
    }
    if !settled(&seen) {
        for l in logs {
            eprintln!("worker log: {}", l.display());
        }
        panic!(
            "the monitor's whole-run (predictions, matched, correct) differ from the committed partials of the same buckets, or cover less than 90 % of them (model: monitor, partials, share): {seen:?}"
        );
    }
    let drift: Vec<DriftEvent> = read_committed(s, &s.topics.drift_events);
    let retrain: Vec<RetrainEvent> = read_committed(s, &s.topics.retrain_events);
    let mut ids = BTreeSet::new();
    for e in &drift {
        assert!(
            ids.insert(&e.event_id),
            "drift event published twice: {e:?}"
        );
    }
    let mut ids = BTreeSet::new();
    for e in &retrain {
        assert!(
            ids.insert(&e.event_id),
            "retrain event published twice: {e:?}"
        );
    }
    assert!(
        drift
            .iter()
            .any(|e| e.model_id == "model-0" && e.state == DriftState::Drift),
        "no drift event for the drifting model: {drift:?}"
    );
    assert!(
        retrain.iter().any(|e| e.model_id == "model-0"),
        "no retrain event for the drifting model: {retrain:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_repeatedly_loses_and_duplicates_nothing() {
    if !needs_broker() {
        return;
    }
    let setup = chaos_settings().await;
    let s = &setup.0;
    let (n, kills) = if full() { (1_000_000, 8) } else { (50_000, 5) };
    let scenario = Scenario::generate(21, n, now_ms() - 4 * 3_600_000);
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
        // member, which waits for the dead one to leave the group and must wait, while
        // restoring, for the abandoned transaction to time out.
        worker = if k == 2 {
            Worker::start(&setup, "b", None)
        } else {
            Worker::start(&setup, "a", Some("a"))
        };
        logs.push(worker.log.clone());
    }
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(
        reference.total(),
        Duration::from_secs(if full() { 1_200 } else { 240 }),
    );
    assert_reference(&reader.seen, &reference, &logs);
    assert_monitor(s, &reader, &logs);
    let status = worker.terminate();
    assert!(status.success(), "worker exit {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_one_three_one_loses_and_duplicates_nothing() {
    if !needs_broker() {
        return;
    }
    let setup = chaos_settings().await;
    let s = &setup.0;
    let n = if full() { 1_000_000 } else { 50_000 };
    let scenario = Scenario::generate(22, n, now_ms() - 4 * 3_600_000);
    let reference = Outcomes::reference(&scenario);
    let producing = produce_in_background(s, &scenario, 20, Duration::from_millis(500));
    // Dynamic members: a stopped worker leaves the group, its partitions move at once.
    let first = Worker::start(&setup, "one", None);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = Worker::start(&setup, "two", None);
    let third = Worker::start(&setup, "three", None);
    let logs = vec![first.log.clone(), second.log.clone(), third.log.clone()];
    tokio::time::sleep(Duration::from_secs(10)).await;
    for w in [second, third] {
        let status = w.terminate();
        assert!(status.success(), "scaled-down worker exit {status}");
    }
    producing.await.expect("producer");
    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(
        reference.total(),
        Duration::from_secs(if full() { 1_200 } else { 240 }),
    );
    assert_reference(&reader.seen, &reference, &logs);
    assert_monitor(s, &reader, &logs);
    let status = first.terminate();
    assert!(status.success(), "worker exit {status}");
}
