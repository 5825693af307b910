//! A label source on librdkafka's default partitioner, on the real broker.
//!
//! Predictions are produced by driftwatch's producer (murmur2, as the contract asks); labels by
//! Python's confluent-kafka with its defaults (`consistent_random`: CRC32 of the key), as a
//! label source left unconfigured would. With `join.misrouted = account` (the default),
//! the join must report the labels' misrouted share — exactly the keys whose CRC32 and murmur2
//! partitions differ, about (n−1)/n — name the likely partitioner, show it in the status
//! `/readyz` serves, and still account for every input exactly. `check-config` run against the
//! live topics must show the same and fail. With `join.misrouted = repartition`, the join's
//! counts must equal the scenario's offline reference exactly, every misrouted label joined
//! through the repartition topic. In account mode the monitor must also raise the model's
//! `misrouted_inputs` data-quality event (DRIFT) on the drift-events topic.
//!
//! Needs python3 with confluent-kafka (`scripts/test` installs it): without it the test fails
//! under CI and is skipped elsewhere, as the broker itself is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use driftwatch_core::join::routing::{crc32_partition, murmur2_partition};
use driftwatch_core::join::Partitioner;
use driftwatch_core::monitor::detectors::MISROUTED_INPUTS;
use driftwatch_core::{DriftEvent, DriftState};
use driftwatch_tests::broker::on_ci;
use driftwatch_tests::monitor_outputs::read_committed;
use driftwatch_tests::scenario::{counters_by_model, produce_records, Record, Scenario, Side};
use driftwatch_tests::stages::{scenario_settings, Stages};
use driftwatch_tests::{
    bootstrap, broker_available, create_topic, driftwatch_binary, now_ms, unique,
};
use driftwatch_worker::settings::{MisroutedMode, Settings};
use driftwatch_worker::status::StageHandles;

const PARTITIONS: i32 = 4;
const REQUESTS: usize = 2_000;

/// Whether python3 can import confluent_kafka; panics under CI when it cannot.
fn confluent_kafka_available() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import confluent_kafka"])
        .output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return true;
    }
    let why = match probe {
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => format!("python3: {e}"),
    };
    assert!(
        !on_ci(),
        "python3 with confluent-kafka is required under CI (scripts/test installs it): {why}"
    );
    eprintln!("skipped: python3 with confluent-kafka not found: {why}");
    false
}

/// Produces `labels` (key, payload) to `topic` with confluent-kafka's default partitioner.
fn produce_with_librdkafka_defaults(topic: &str, labels: &[(String, String)]) {
    produce_lines(topic, labels.iter().map(|(k, v)| format!("{k}\t{v}")), None);
}

/// Produces `records` (binary payloads) to `topic` with confluent-kafka's default partitioner.
fn produce_binary_with_librdkafka_defaults(topic: &str, records: &[&Record]) {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let lines = records
        .iter()
        .map(|r| format!("{}\t{}", r.key, hex(&r.payload)));
    produce_lines(topic, lines, Some("hex"));
}

fn produce_lines(topic: &str, lines: impl Iterator<Item = String>, mode: Option<&str>) {
    let file = std::env::temp_dir().join(format!("{}.tsv", unique("misrouted-labels")));
    let mut f = std::fs::File::create(&file).unwrap();
    let mut count = 0usize;
    for line in lines {
        writeln!(f, "{line}").unwrap();
        count += 1;
    }
    drop(f);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/default_partitioner_producer.py");
    let out = Command::new("python3")
        .arg(script)
        .args([bootstrap().as_str(), topic])
        .arg(&file)
        .args(mode)
        .output()
        .expect("run python3");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "confluent-kafka producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acked: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(acked, count);
}

/// The drift events committed so far, read again until every model of `models` has a
/// `misrouted_inputs` DRIFT event or `timeout` passed (a bound, not an assertion: the caller
/// asserts on what was read).
async fn wait_for_misrouted_events(
    s: &Settings,
    models: &[&str],
    timeout: Duration,
) -> Vec<DriftEvent> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let (settings, topic) = (s.clone(), s.topics.drift_events.clone());
        let events: Vec<DriftEvent> =
            tokio::task::spawn_blocking(move || read_committed(&settings, &topic))
                .await
                .expect("reader");
        let all = models.iter().all(|m| {
            events.iter().any(|e| {
                e.model_id == *m && e.detector == MISROUTED_INPUTS && e.state == DriftState::Drift
            })
        });
        if all || std::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc32_labels_are_reported_misrouted_and_every_input_is_still_accounted() {
    if !broker_available() || !confluent_kafka_available() {
        return;
    }
    let s = scenario_settings(PARTITIONS).await;
    let t = &s.topics;
    // Event times two hours back: once the inputs are read, the idle fallback moves the
    // watermark to processing time and every unmatched input expires.
    let start = now_ms() - 2 * 3_600_000;
    let run = unique("req");
    let mut predictions = Vec::new();
    let mut labels = Vec::new();
    let mut together = 0u64;
    for i in 0..REQUESTS {
        let key = format!("{run}-{i}");
        let time = start + i as i64 * 1_000;
        let payload = format!(
            r#"{{"request_id":"{key}","model_id":"misrouted","model_version":"v1","timestamp":{time},"predicted_label":"a"}}"#
        );
        predictions.push(Record {
            side: Side::Predictions,
            key: key.clone(),
            payload: payload.into_bytes(),
            time,
        });
        let label = format!(
            r#"{{"request_id":"{key}","model_id":"misrouted","timestamp":{},"label":"a"}}"#,
            time + 500
        );
        let k = key.as_bytes();
        together += u64::from(crc32_partition(k, PARTITIONS) == murmur2_partition(k, PARTITIONS));
        labels.push((key, label));
    }
    let apart = REQUESTS as u64 - together;

    let stages = Stages::start(&s);
    produce_records(&s, &predictions).await;
    produce_with_librdkafka_defaults(&t.ground_truth, &labels);
    stages
        .wait_for_inputs(2 * REQUESTS as u64, Duration::from_secs(180))
        .await;
    let handles = StageHandles {
        join: Some((stages.join.clone(), s.kafka.join_group_id.clone())),
        monitor: None,
        monitor_group: s.monitor.group_id.clone(),
        sources: None,
    };
    let status = handles.status();
    // The per-model data-quality event: judged in event time once the epochs are applied.
    let events = wait_for_misrouted_events(&s, &["misrouted"], Duration::from_secs(180)).await;
    let (join, _) = stages.stop().await;
    let dq: Vec<&DriftEvent> = events
        .iter()
        .filter(|e| e.detector == MISROUTED_INPUTS && e.state == DriftState::Drift)
        .collect();
    assert!(
        dq.iter().any(|e| e.model_id == "misrouted"
            && e.model_version == "v1"
            && e.feature.is_none()
            && e.statistic == "misrouted_share"
            && e.value >= 0.01),
        "{events:?}"
    );

    // Reported: the labels' misrouted records are exactly the keys whose two partitions differ.
    let gt = &join.misrouted[&t.ground_truth];
    let pred = &join.misrouted[&t.predictions];
    assert_eq!(pred.tally.misrouted, 0, "{pred:?}");
    assert_eq!(pred.likely_partitioner, Partitioner::Murmur2);
    assert!(gt.tally.checked >= REQUESTS as u64, "{gt:?}");
    if join.transactions_aborted == 0 {
        // Nothing was read twice.
        assert_eq!(gt.tally.checked, REQUESTS as u64, "{gt:?}");
        assert_eq!(gt.tally.misrouted, apart, "{gt:?}");
        assert_eq!(gt.tally.on_crc32, apart, "{gt:?}");
    }
    let expected_share = f64::from(PARTITIONS - 1) / f64::from(PARTITIONS);
    assert!((gt.share - expected_share).abs() < 0.05, "{gt:?}");
    assert_eq!(gt.likely_partitioner, Partitioner::ConsistentRandom);
    assert!(gt.alert, "{gt:?}");
    // What /readyz and /metrics serve.
    let shown = &status.misrouted[&t.ground_truth];
    assert_eq!(shown.likely_partitioner, Partitioner::ConsistentRandom);
    assert!(shown.tally.misrouted > 0);

    // Still accounted: every input in exactly one outcome; the pairs split apart are one
    // expired prediction and one orphan label each.
    let c = join.total();
    assert_eq!(
        (c.predictions, c.labels),
        (REQUESTS as u64, REQUESTS as u64),
        "{c:?}"
    );
    assert_eq!(c.matched, together, "{c:?}");
    assert_eq!(c.expired_unlabeled, apart, "{c:?}");
    assert_eq!(c.orphan_labels, apart, "{c:?}");
    assert_eq!(
        c.predictions + c.labels,
        2 * c.matched
            + c.expired_unlabeled
            + c.orphan_labels
            + c.duplicate_predictions
            + c.duplicate_labels
            + c.late_labels
            + c.dead_lettered,
        "{c:?}"
    );

    // check-config against the live topics shows it too, and fails.
    let mut cmd = Command::new(driftwatch_binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("DRIFTWATCH") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS", bootstrap())
        .env("DRIFTWATCH__TOPICS__PREDICTIONS", &t.predictions)
        .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", &t.ground_truth)
        .env("DRIFTWATCH__TOPICS__MODEL_PARTIALS", &t.model_partials)
        .env("DRIFTWATCH__TOPICS__DEAD_LETTER", &t.dead_letter)
        .arg("check-config")
        .output()
        .expect("run driftwatch check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    let line = |topic: &str| {
        stdout
            .lines()
            .find(|l| l.contains(&format!("routing of {topic}:")))
            .unwrap_or_else(|| panic!("no routing line for {topic} in\n{stdout}"))
            .to_string()
    };
    let gt_line = line(&t.ground_truth);
    assert!(
        gt_line.contains(&format!("{REQUESTS} recent keyed records checked")),
        "{gt_line}"
    );
    assert!(gt_line.contains(&format!("{apart} misrouted")), "{gt_line}");
    assert!(gt_line.contains("consistent_random"), "{gt_line}");
    assert!(line(&t.predictions).contains(" 0 misrouted"), "{stdout}");
    assert!(
        stderr.contains("join.misrouted_alert_share") && stderr.contains(&t.ground_truth),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_repartition_crc32_labels_are_joined_exactly_as_the_offline_reference() {
    if !broker_available() || !confluent_kafka_available() {
        return;
    }
    let mut s = scenario_settings(PARTITIONS).await;
    s.join.misrouted = MisroutedMode::Repartition;
    s.topics.repartition = unique("repartition");
    create_topic(&s.topics.repartition, PARTITIONS).await;
    // The hop delays a label by about a flush interval plus a commit: labels of different
    // partitions meet the task in a different order than they were read. A lateness above
    // the scenario's whole span keeps that from deciding any outcome; the idle fallback
    // still resolves everything once the inputs are read (event times are two hours back).
    s.join.allowed_lateness = Duration::from_secs(30 * 60);
    let scenario = Scenario::generate(61, 4_000, now_ms() - 2 * 3_600_000);
    let (predictions, labels): (Vec<&Record>, Vec<&Record>) = scenario
        .records
        .iter()
        .partition(|r| matches!(r.side, Side::Predictions));
    let apart = labels
        .iter()
        .filter(|r| {
            let k = r.key.as_bytes();
            crc32_partition(k, PARTITIONS) != murmur2_partition(k, PARTITIONS)
        })
        .count() as u64;
    produce_records(&s, predictions.iter().copied()).await;
    produce_binary_with_librdkafka_defaults(&s.topics.ground_truth, &labels);

    let stages = Stages::start(&s);
    stages
        .wait_for_inputs(scenario.inputs(), Duration::from_secs(240))
        .await;
    let (join, _) = stages.stop().await;

    // Every input accounted once, as the offline reference says: the misrouted labels were
    // joined as their copies, and their originals are not counted again. The copies are
    // announced misrouted (a measure apart from the outcomes, which the reference lacks).
    let mut counted = counters_by_model(std::slice::from_ref(&join));
    let copies: u64 = counted.values().map(|c| c.misrouted_labels).sum();
    assert!(counted.values().all(|c| c.misrouted_predictions == 0));
    for c in counted.values_mut() {
        c.misrouted_labels = 0;
    }
    assert_eq!(counted, scenario.expected);
    let gt = &join.misrouted[&s.topics.ground_truth];
    assert!(gt.tally.misrouted >= apart && apart > 0, "{gt:?}");
    assert_eq!(gt.repartitioned, gt.tally.misrouted, "{gt:?}");
    assert_eq!(gt.likely_partitioner, Partitioner::ConsistentRandom);
    let pred = &join.misrouted[&s.topics.predictions];
    assert_eq!(
        (pred.tally.misrouted, pred.repartitioned),
        (0, 0),
        "{pred:?}"
    );
    if join.transactions_aborted == 0 {
        assert_eq!(gt.repartitioned, apart, "{gt:?}");
        // Every copy that reached a task; the few undecodable ones were dead-lettered first.
        let dead: u64 = scenario.expected.values().map(|c| c.dead_lettered).sum();
        assert!(
            copies <= apart && copies + dead >= apart,
            "{copies} of {apart}"
        );
        assert_eq!(join.events_out[&s.topics.repartition], apart);
    }
}
