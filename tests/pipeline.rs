//! Both stages on the real broker.
//!
//! - A synthetic classifier whose accuracy falls from ~0.92 to ~0.70 at a known event time
//!   (labels delayed log-normally, median one minute, some never) next to a stable one: the
//!   monitor stage publishes DRIFT events for the drifting model (its accuracy, and its shifted
//!   feature `x0`) after the change and within a bounded event-time delay, exactly one retrain
//!   event for it, and nothing for the stable model (no false alarm). One seed (3); seeds 1–5
//!   with `DRIFTWATCH_FULL=1`, about 50 s each.
//! - `driftwatch run --role all` (the real binary) serves `/metrics` with the named series and
//!   plausible values, `/readyz` turns ready after assignment, the console at `/` and
//!   `/api/models`, and SIGTERM stops it cleanly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use driftwatch_codec::from_avro;
use driftwatch_core::{DriftEvent, DriftState, RetrainEvent};
use driftwatch_generator::publish::{publish, Pace};
use driftwatch_generator::{GeneratorConfig, Scenario, TrafficGenerator};
use driftwatch_tests::monitor_outputs::create_topics_of;
use driftwatch_tests::stages::Stages;
use driftwatch_tests::{driftwatch_binary, settings, unique, KillOnDrop};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use driftwatch_worker::topics::{required, TopicRole};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

/// Event-time span of the traffic and the wall time it is replayed in.
const SPAN: Duration = Duration::from_secs(2 * 3600);
const REPLAY: Duration = Duration::from_secs(20);
/// The longest accepted delay from the change to the first DRIFT event, in event time.
const MAX_DETECTION_DELAY_MS: i64 = 30 * 60_000;
/// For feature drift, one feature window (30 min here) longer: a feature's DRIFT stands only
/// after a whole window of drifting verdicts, so noise cannot raise it.
const MAX_FEATURE_DETECTION_DELAY_MS: i64 = MAX_DETECTION_DELAY_MS + 30 * 60_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

async fn pipeline_settings() -> Settings {
    driftwatch_tests::init_logging();
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, 4).await;
    s.join.label_timeout = Duration::from_secs(30 * 60);
    s.join.orphan_timeout = Duration::from_secs(30 * 60);
    s.join.flush_interval = Duration::from_millis(250);
    s.monitor.commit_interval = Duration::from_millis(250);
    s.monitor.metrics_interval = Duration::from_secs(1);
    let d = &mut s.monitor.detection.default;
    d.windows = vec!["15m".into(), "1h".into()];
    d.maturity_ms = 5 * 60_000;
    d.accuracy_drop.window = "15m".into();
    d.feature_drift.window = "30m".into();
    d.feature_drift.reference = "30m".into();
    driftwatch_tests::with_state_from_env(&mut s);
    s.validate().expect("valid settings");
    s
}

async fn read_all<T: driftwatch_codec::AvroRecord>(s: &Settings, topic: &str) -> Vec<T> {
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("reader"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let mut stream = consumer.stream();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(6), stream.next()).await {
        let m = m.expect("consume");
        out.push(from_avro::<T>(m.payload().expect("payload")).expect("decodes"));
    }
    out
}

struct Outcome {
    drift: Vec<DriftEvent>,
    retrain: Vec<RetrainEvent>,
    drift_at: i64,
}

async fn run_scenario(seed: u64, prior_retrain: bool) -> Outcome {
    let s = pipeline_settings().await;
    let mut g = GeneratorConfig::two_models(seed);
    let span_ms = SPAN.as_millis() as i64;
    g.start_ms = now_ms() - span_ms;
    g.duration_ms = span_ms;
    g.predictions_per_second = 24_000.0 / SPAN.as_secs_f64();
    g.scenario = Scenario::Drift;
    g.label_delay.max_ms = 20 * 60_000;
    let g = g.resolved();
    let drift_at = g.start_ms + span_ms / 2;
    let generator = TrafficGenerator::new(g).expect("generator");
    if prior_retrain {
        // A retrain event another worker (or this deployment before a restart) published
        // just before the change: the cooldown must hold across that hand-over.
        let earlier = RetrainEvent {
            event_id: "earlier".into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            reasons: vec!["earlier".into()],
            drift_event_ids: vec![],
            metrics: vec![],
            train_from: drift_at - 3_600_000,
            train_to: drift_at,
            dry_run: false,
            created_at: drift_at,
            estimated_decay_per_day: None,
            suggested_retrain_interval_ms: None,
        };
        let producer: rdkafka::producer::FutureProducer =
            driftwatch_worker::clients::producer_config(&s.kafka)
                .create()
                .expect("producer");
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&s.topics.retrain_events)
                    .key("fraud")
                    .payload(&driftwatch_codec::to_avro(&earlier).expect("encode")),
                Duration::from_secs(10),
            )
            .await
            .expect("publish earlier retrain event");
    }

    let stages = Stages::start(&s);
    tokio::time::sleep(Duration::from_secs(4)).await; // both groups form
    if prior_retrain {
        assert_eq!(
            stages.monitor.stats().restored_policies,
            vec!["fraud".to_string()]
        );
    }
    let scale = SPAN.as_secs_f64() / REPLAY.as_secs_f64();
    publish(
        &s.kafka,
        &s.topics,
        generator,
        Pace::TimeScale(scale),
        std::future::pending(),
    )
    .await
    .expect("publish");
    tokio::time::sleep(Duration::from_secs(5)).await;
    stages.stop().await;
    Outcome {
        drift: read_all(&s, &s.topics.drift_events).await,
        retrain: read_all(&s, &s.topics.retrain_events).await,
        drift_at,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_flags_the_drifting_model_and_only_it() {
    let seeds: Vec<u64> = if std::env::var_os("DRIFTWATCH_FULL").is_some() {
        (1..=5).collect()
    } else {
        vec![3]
    };
    let mut false_alarms = 0;
    for seed in seeds {
        let o = run_scenario(seed, false).await;
        let into_drift: Vec<&DriftEvent> = o
            .drift
            .iter()
            .filter(|e| e.state == DriftState::Drift)
            .collect();
        // Nothing for the stable model, nothing before the change.
        let early: Vec<&&DriftEvent> = into_drift
            .iter()
            .filter(|e| e.model_id == "churn" || e.detected_at < o.drift_at)
            .collect();
        false_alarms += early.len();
        assert!(early.is_empty(), "seed {seed}: false alarms {early:#?}");
        // Every producer here partitions by murmur2: no misrouted-inputs event at all.
        assert!(
            o.drift.iter().all(|e| e.detector != "misrouted_inputs"),
            "seed {seed}: {:#?}",
            o.drift
        );
        assert!(
            o.retrain.iter().all(|e| e.model_id == "fraud"),
            "seed {seed}: {:#?}",
            o.retrain
        );
        assert_eq!(
            o.retrain.len(),
            1,
            "seed {seed}: exactly one retrain event: {:#?}",
            o.retrain
        );
        let accuracy = into_drift
            .iter()
            .filter(|e| e.model_id == "fraud" && e.detector == "accuracy_drop")
            .map(|e| e.detected_at)
            .min()
            .unwrap_or_else(|| panic!("seed {seed}: no accuracy DRIFT event: {:#?}", o.drift));
        let delay = accuracy - o.drift_at;
        println!(
            "seed {seed}: accuracy drift detected {} min after the change (event time)",
            delay / 60_000
        );
        assert!(
            delay <= MAX_DETECTION_DELAY_MS,
            "seed {seed}: detected after {delay} ms"
        );
        // The covariate shift of fraud's x0 is seen as data drift, after the change.
        let x0 = into_drift
            .iter()
            .filter(|e| e.model_id == "fraud" && e.feature.as_deref() == Some("x0"))
            .map(|e| e.detected_at)
            .min()
            .unwrap_or_else(|| {
                panic!("seed {seed}: no DRIFT event for feature x0: {:#?}", o.drift)
            });
        println!(
            "seed {seed}: x0 drift detected {} min after the change (event time)",
            (x0 - o.drift_at) / 60_000
        );
        assert!(
            x0 - o.drift_at <= MAX_FEATURE_DETECTION_DELAY_MS,
            "seed {seed}: x0 detected late"
        );
        // Idempotent ids: no id twice.
        let mut ids: Vec<&str> = o.drift.iter().map(|e| e.event_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(
            ids.len(),
            o.drift.len(),
            "seed {seed}: duplicate drift event ids"
        );
    }
    println!("false alarms: {false_alarms}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The value of the first sample of `series` whose line contains every one of `labels`.
fn sample(body: &str, series: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(series) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_serves_metrics_readiness_and_stops_on_sigterm() {
    let s = pipeline_settings().await;
    let port = free_port();
    let t = &s.topics;
    let mut child = KillOnDrop(
        Command::new(driftwatch_binary())
            .args(["run", "--role", "all"])
            .env(
                "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS",
                &s.kafka.bootstrap_servers,
            )
            .env("DRIFTWATCH__KAFKA__JOIN_GROUP_ID", &s.kafka.join_group_id)
            .env("DRIFTWATCH__MONITOR__GROUP_ID", &s.monitor.group_id)
            .env("DRIFTWATCH__TOPICS__PREDICTIONS", &t.predictions)
            .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", &t.ground_truth)
            .env("DRIFTWATCH__TOPICS__MODEL_PARTIALS", &t.model_partials)
            .env("DRIFTWATCH__TOPICS__DEAD_LETTER", &t.dead_letter)
            .env("DRIFTWATCH__TOPICS__DRIFT_EVENTS", &t.drift_events)
            .env("DRIFTWATCH__TOPICS__RETRAIN_EVENTS", &t.retrain_events)
            .env("DRIFTWATCH__TOPICS__MODEL_METRICS", &t.model_metrics)
            .env("DRIFTWATCH__HTTP__BIND", format!("127.0.0.1:{port}"))
            .env("DRIFTWATCH__JOIN__FLUSH_INTERVAL", "250ms")
            .env("DRIFTWATCH_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start driftwatch"),
    );

    // Not ready before the group assigned partitions; ready after.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_unready = false;
    loop {
        match http_get(port, "/readyz") {
            Some((200, _)) => break,
            Some((503, body)) => {
                saw_unready = true;
                assert!(body.contains("assigned"), "{body}");
            }
            _ => {}
        }
        assert!(Instant::now() < deadline, "never ready");
        assert!(
            child.try_wait().expect("child").is_none(),
            "driftwatch exited early"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(saw_unready, "/readyz was never 503 before the assignment");
    assert_eq!(http_get(port, "/healthz").map(|(c, _)| c), Some(200));

    // Some traffic: 600 predictions over 10 minutes of event time, as fast as possible.
    let mut g = GeneratorConfig::two_models(5);
    g.start_ms = now_ms() - 3_600_000;
    g.duration_ms = 600_000;
    g.predictions_per_second = 1.0;
    g.label_delay.max_ms = 120_000;
    let report = publish(
        &s.kafka,
        &s.topics,
        TrafficGenerator::new(g).expect("gen"),
        Pace::Unthrottled,
        std::future::pending(),
    )
    .await
    .expect("publish");
    let inputs = (report.predictions + report.labels) as f64;

    let deadline = Instant::now() + Duration::from_secs(60);
    let body = loop {
        let (code, body) = http_get(port, "/metrics").expect("/metrics answers");
        assert_eq!(code, 200);
        let read: f64 = [&t.predictions, &t.ground_truth]
            .iter()
            .filter_map(|topic| {
                sample(
                    &body,
                    "driftwatch_events_in_total",
                    &[&format!("topic=\"{topic}\"")],
                )
            })
            .sum();
        let lag_seen = body
            .lines()
            .any(|l| l.starts_with("kafka_consumergroup_lag{"));
        // Partials count as written once their transaction commits, a flush after the read.
        let partials_out = sample(
            &body,
            "driftwatch_events_out_total",
            &[&format!("topic=\"{}\"", t.model_partials)],
        )
        .is_some_and(|v| v > 0.0);
        if (read >= inputs && lag_seen && partials_out) || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let read: f64 = [&t.predictions, &t.ground_truth]
        .iter()
        .filter_map(|topic| {
            sample(
                &body,
                "driftwatch_events_in_total",
                &[&format!("topic=\"{topic}\"")],
            )
        })
        .sum();
    assert_eq!(read, inputs, "events in per topic:\n{body}");
    let matched = sample(
        &body,
        "driftwatch_join_inputs_total",
        &["model=\"fraud\"", "version=\"v1\"", "outcome=\"matched\""],
    );
    assert!(
        matched.is_some_and(|m| m > 0.0),
        "matched outcomes of fraud:\n{body}"
    );
    assert!(
        sample(&body, "driftwatch_join_buffer_entries", &[]).is_some(),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "kafka_consumergroup_lag",
            &[&format!("topic=\"{}\"", t.predictions)]
        )
        .is_some_and(|l| l >= 0.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "driftwatch_processing_latency_seconds",
            &["quantile=\"0.99\""]
        )
        .is_some_and(|v| v > 0.0 && v < 1.0),
        "{body}"
    );
    assert!(
        sample(
            &body,
            "driftwatch_events_out_total",
            &[&format!("topic=\"{}\"", t.model_partials)]
        )
        .is_some_and(|v| v > 0.0),
        "{body}"
    );

    // Exactly-once by default: the join commits transactions and restored its (empty) state.
    assert!(
        sample(
            &body,
            "driftwatch_transactions_total",
            &["stage=\"join\"", "result=\"committed\""]
        )
        .is_some_and(|v| v > 0.0),
        "{body}"
    );
    assert!(
        sample(&body, "driftwatch_restore_records_total", &[]).is_some(),
        "{body}"
    );
    // ... and times its commits (on a test broker, well under the 10 s transaction timeout).
    assert!(
        sample(
            &body,
            "driftwatch_join_commit_seconds",
            &["quantile=\"0.99\""]
        )
        .is_some_and(|v| v > 0.0 && v < 10.0),
        "{body}"
    );

    // The console is served on the same port: the page, and its data naming both stages.
    let (code, page) = http_get(port, "/").expect("/ answers");
    assert_eq!(code, 200);
    assert!(page.contains("driftwatch console"), "{page}");
    let (code, api) = http_get(port, "/api/models").expect("/api/models answers");
    assert_eq!(code, 200);
    assert!(
        api.contains("\"join\":true") && api.contains("\"monitor\":true"),
        "{api}"
    );

    // SIGTERM: flush, commit, leave, exit 0 within a bounded time.
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("driftwatch did not stop within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit {status:?}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_profile_reaches_the_monitor() {
    let s = pipeline_settings().await;
    let refs = unique("model-references");
    let mut s = s;
    s.topics.model_references = refs.clone();
    let specs: Vec<_> = required(&s)
        .iter()
        .filter(|t| t.role == TopicRole::References)
        .map(|t| t.spec(1))
        .collect();
    driftwatch_worker::clients::create_topics(&s.kafka, &specs)
        .await
        .expect("references topic");

    let dir = std::env::temp_dir().join(unique("profile"));
    std::fs::create_dir_all(&dir).expect("dir");
    let csv = dir.join("train.csv");
    let mut text = String::from("x,colour,label\n");
    for i in 0..300 {
        text.push_str(&format!(
            "{},{},{}\n",
            i % 17,
            ["a", "b"][i % 2],
            ["yes", "no"][i % 3 % 2]
        ));
    }
    std::fs::write(&csv, text).expect("csv");
    let out = Command::new(driftwatch_binary())
        .args([
            "profile",
            "--model",
            "fraud",
            "--version",
            "v1",
            "--label-column",
            "label",
            "--input",
        ])
        .arg(&csv)
        .env(
            "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS",
            &s.kafka.bootstrap_servers,
        )
        .env("DRIFTWATCH__TOPICS__MODEL_REFERENCES", &refs)
        .output()
        .expect("profile runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);

    let published: Vec<driftwatch_core::ModelReference> = read_all(&s, &refs).await;
    assert_eq!(published.len(), 1);
    assert_eq!(
        (published[0].key().as_str(), published[0].rows),
        ("fraud/v1", 300)
    );

    let running = Pipeline::new(&s, Role::Monitor)
        .expect("monitor stage")
        .start();
    let handle = running
        .handles()
        .monitor
        .clone()
        .expect("the monitor stage runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while handle.stats().references.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop().await.expect("monitor stage");
    assert_eq!(handle.stats().references, vec!["fraud/v1".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retrain_cooldown_holds_across_a_restart() {
    let o = run_scenario(3, true).await;
    // The drift is still reported...
    assert!(
        o.drift.iter().any(|e| e.model_id == "fraud"
            && e.detector == "accuracy_drop"
            && e.state == DriftState::Drift),
        "{:#?}",
        o.drift
    );
    // ...but the earlier retrain event, replayed at start-up, keeps the policy in its cooldown:
    // only that earlier event is on the topic.
    let ids: Vec<&str> = o.retrain.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, vec!["earlier"], "{:#?}", o.retrain);
}
