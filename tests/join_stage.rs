//! The join stage on the real broker: two workers in one consumer group over 8 co-partitioned
//! partitions; every input accounted for exactly, every matched outcome correct; and the
//! catch-up case (all predictions first, all labels afterwards, workers started only then)
//! ends with the same counts.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driftwatch_codec::from_avro;
use driftwatch_core::{JoinCounters, ModelPartial};
use driftwatch_tests::scenario::{
    counters_by_model, produce_records, Scenario, Side, LABEL_TIMEOUT_MS, OVERSIZED_LIMIT,
};
use driftwatch_tests::{create_topic, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::join::{JoinStageHandle, JoinStats};
use driftwatch_worker::pipeline::{Pipeline, Role, RunningPipeline};
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::Message;

const PARTITIONS: i32 = 8;
const PREDICTIONS: usize = 100_000;

struct Topics {
    settings: Settings,
}

async fn topics() -> Topics {
    driftwatch_tests::init_logging();
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.join_group_id = unique("join");
    s.topics.predictions = unique("predictions");
    s.topics.ground_truth = unique("ground-truth");
    s.topics.model_partials = unique("partials");
    s.topics.dead_letter = unique("dead-letter");
    for t in [
        &s.topics.predictions,
        &s.topics.ground_truth,
        &s.topics.model_partials,
    ] {
        create_topic(t, PARTITIONS).await;
    }
    create_topic(&s.topics.dead_letter, 1).await;
    let j = &mut s.join;
    j.label_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    j.orphan_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    j.allowed_lateness = Duration::from_secs(30);
    j.idle_timeout = Duration::from_secs(3);
    j.flush_interval = Duration::from_millis(500);
    j.max_message_bytes = OVERSIZED_LIMIT;
    driftwatch_tests::with_state_from_env(&mut s);
    Topics { settings: s }
}

async fn produce(s: &Settings, scenario: &Scenario, only: Option<Side>) {
    produce_records(
        s,
        scenario
            .records
            .iter()
            .filter(|r| only.is_none_or(|o| o == r.side)),
    )
    .await;
}

struct Worker {
    handle: JoinStageHandle,
    running: RunningPipeline,
}

fn start_worker(s: &Settings) -> Worker {
    // Workers never share a state folder (each wipes its own at start).
    let mut s = s.clone();
    if let Some(dir) = &s.join.state.dir {
        s.join.state.dir = Some(dir.join(unique("worker")));
    }
    let running = Pipeline::new(&s, Role::Join).expect("join stage").start();
    let handle = running.handles().join.clone().expect("the join stage runs");
    Worker { handle, running }
}

/// Waits until every input is accounted for (or the deadline passes), then stops the workers.
async fn settle(workers: Vec<Worker>, inputs: u64) -> BTreeMap<String, JoinCounters> {
    settle_with_stats(workers, inputs).await.0
}

/// [`settle`], also returning each worker's last stats.
async fn settle_with_stats(
    workers: Vec<Worker>,
    inputs: u64,
) -> (BTreeMap<String, JoinCounters>, Vec<JoinStats>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let stats: Vec<JoinStats> = workers.iter().map(|w| w.handle.stats()).collect();
        let total: u64 = counters_by_model(&stats)
            .values()
            .map(JoinCounters::inputs)
            .sum();
        if total >= inputs || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut stats = Vec::new();
    for w in workers {
        w.running.stop().await.expect("join stage run");
        stats.push(w.handle.stats());
    }
    for s in &stats {
        assert_eq!(s.dropped_on_revoke, 0, "a rebalance dropped join state");
    }
    (counters_by_model(&stats), stats)
}

/// Reads every partial from the internal topic and merges the confusion cells per model.
async fn confusion_from_partials(
    s: &Settings,
) -> BTreeMap<String, BTreeMap<(String, String), u64>> {
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("partials-reader"))
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&s.topics.model_partials])
        .expect("subscribe");
    let mut out: BTreeMap<String, BTreeMap<(String, String), u64>> = BTreeMap::new();
    let mut stream = consumer.stream();
    // Partials are all flushed before the workers stop; read until the topic is quiet.
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(8), stream.next()).await {
        let m = m.expect("consume");
        if driftwatch_worker::join_progress::is_progress(m.headers()) {
            // The join's watermark announcements, not partials.
            continue;
        }
        let p: ModelPartial = from_avro(m.payload().expect("payload")).expect("partial decodes");
        assert_eq!(
            m.key(),
            Some(p.model_id.as_bytes()),
            "partials are keyed by model id"
        );
        for cell in p.confusion {
            *out.entry(p.model_id.clone())
                .or_default()
                .entry((cell.predicted, cell.actual))
                .or_default() += cell.count;
        }
    }
    out
}

/// Dead letters read back, and how many of them name the `oversized` error kind.
async fn dead_letters(s: &Settings) -> (u64, u64) {
    let consumer: StreamConsumer = consumer_config(&s.kafka, &unique("dl-reader"))
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&s.topics.dead_letter])
        .expect("subscribe");
    let mut stream = consumer.stream();
    let (mut n, mut oversized) = (0, 0);
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(8), stream.next()).await {
        let m = m.expect("consume");
        let headers = m.headers().expect("dead letters carry headers");
        let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
        for required in [
            "driftwatch.source.topic",
            "driftwatch.source.partition",
            "driftwatch.source.offset",
            "driftwatch.error.kind",
        ] {
            assert!(
                names.contains(&required),
                "missing header {required}: {names:?}"
            );
        }
        n += 1;
        if headers
            .iter()
            .any(|h| h.key == "driftwatch.error.kind" && h.value == Some(b"oversized".as_slice()))
        {
            oversized += 1;
            assert!(m.payload().is_none(), "an oversized payload is not copied");
        }
    }
    (n, oversized)
}

fn start_ms() -> i64 {
    // Two hours ago: the data is historical, so once the inputs are caught up and idle the
    // processing-time fallback expires everything still pending.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    now - 2 * 3_600_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_account_for_every_input_and_match_correctly() {
    two_workers_account(topics().await).await;
}

/// The same with the local state store under a 1 MiB budget per worker (four tasks each, so
/// about 3 600 entries in memory per task): most pending predictions, orphan labels and
/// tombstones live on disk, and every count must still be exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_account_for_every_input_with_a_1_mib_state_budget() {
    let mut t = topics().await;
    driftwatch_tests::with_state(&mut t.settings, "1MiB");
    let stats = two_workers_account(t).await;
    let spilled: u64 = stats.iter().map(|s| s.state_spilled).sum();
    let on_disk: u64 = stats.iter().map(|s| s.state_on_disk).sum();
    println!("entries spilled to disk: {spilled}, on disk at the end: {on_disk}");
    assert!(
        spilled > PREDICTIONS as u64 / 2,
        "the store took most entries: {spilled} spilled"
    );
}

/// Two join workers over the scenario: exact counts per model, matched outcomes, dead letters.
async fn two_workers_account(t: Topics) -> Vec<JoinStats> {
    let scenario = Scenario::generate(7, PREDICTIONS, start_ms());
    let workers = vec![start_worker(&t.settings), start_worker(&t.settings)];
    // Both members join the first generation (broker: group.initial.rebalance.delay.ms).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let assigned = loop {
        let assigned: Vec<Vec<i32>> = workers.iter().map(|w| w.handle.stats().assigned).collect();
        if assigned.iter().all(|a| !a.is_empty()) || tokio::time::Instant::now() > deadline {
            break assigned;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        assigned.iter().map(Vec::len).sum::<usize>(),
        PARTITIONS as usize,
        "{assigned:?}"
    );
    assert!(
        assigned.iter().all(|a| a.len() == PARTITIONS as usize / 2),
        "range assignor splits 4 + 4: {assigned:?}"
    );

    produce(&t.settings, &scenario, None).await;
    let (counts, stats) = settle_with_stats(workers, scenario.inputs()).await;
    assert_eq!(counts, scenario.expected, "accounting per model");
    let total: u64 = counts.values().map(JoinCounters::inputs).sum();
    assert_eq!(total, scenario.inputs());

    assert_eq!(
        confusion_from_partials(&t.settings).await,
        scenario.confusion,
        "matched outcomes"
    );
    assert_eq!(
        dead_letters(&t.settings).await,
        (scenario.garbage, 2),
        "dead letters, oversized"
    );
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_a_backlog_gives_the_same_counts() {
    let t = topics().await;
    let scenario = Scenario::generate(7, PREDICTIONS, start_ms());
    // All predictions first, then the whole ground-truth topic; workers start only then.
    produce(&t.settings, &scenario, Some(Side::Predictions)).await;
    produce(&t.settings, &scenario, Some(Side::Labels)).await;
    let workers = vec![start_worker(&t.settings), start_worker(&t.settings)];
    let counts = settle(workers, scenario.inputs()).await;
    assert_eq!(
        counts, scenario.expected,
        "accounting per model after catch-up"
    );
    assert_eq!(
        confusion_from_partials(&t.settings).await,
        scenario.confusion,
        "matched outcomes"
    );
}
