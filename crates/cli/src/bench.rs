//! `driftwatch bench`: end-to-end throughput and latency against a real broker.
//!
//! 1. **Produce** a backlog of generated predictions and labels (historical event times) as fast
//!    as the producer goes.
//! 2. **Raw consume**: a consumer with driftwatch's settings and an empty handler reads the whole
//!    backlog — the client's ceiling on this machine and broker.
//! 3. **Pipeline**: the join stage (and the monitor stage, in the same process) catches up on the
//!    same backlog; the rate is inputs processed per second of wall time.
//! 4. **Restore** (exactly-once): a new join stage in the same group restores the state the
//!    pipeline left in its changelog; records, entries, bytes and seconds are reported.
//! 5. **Latency at half load**: fresh topics, traffic published in real time at 50 % of the
//!    pipeline's rate with short label delays; the join stage records, per matched outcome, the
//!    time from the later of prediction and label (event time = publish time here) to the match.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use driftwatch_codec::from_avro;
use driftwatch_core::ModelMetrics;
use driftwatch_generator::{GeneratedRecord, GeneratorConfig, RecordKind, Side, TrafficGenerator};
use driftwatch_worker::clients::{consumer_config, create_topics, delete_topics, TopicSpec};
use driftwatch_worker::join::{JoinStage, JoinStageHandle};
use driftwatch_worker::monitor::MonitorStage;
use driftwatch_worker::settings::Settings;
use driftwatch_worker::traffic::{publish, Pace};
use futures::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::sync::oneshot;

/// Options of one benchmark run.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub predictions: u64,
    pub partitions: i32,
    pub latency_time: Duration,
    /// Offered load of the latency phase (inputs/s); `None`: half of the measured maximum,
    /// and only then are the backlog phases run.
    pub latency_load: Option<f64>,
    pub seed: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn fresh(settings: &Settings, tag: &str) -> Settings {
    let mut s = settings.clone();
    let id = format!("{tag}-{}", now_ms());
    s.topics.predictions = format!("bench-predictions-{id}");
    s.topics.ground_truth = format!("bench-ground-truth-{id}");
    s.topics.model_partials = format!("bench-partials-{id}");
    s.topics.dead_letter = format!("bench-dead-letter-{id}");
    s.topics.drift_events = format!("bench-drift-{id}");
    s.topics.retrain_events = format!("bench-retrain-{id}");
    s.topics.model_metrics = format!("bench-metrics-{id}");
    s.kafka.join_group_id = format!("bench-join-{id}");
    s.monitor.group_id = format!("bench-monitor-{id}");
    // Changelogs named after the run's groups, never a configured one (they are deleted).
    s.topics.join_changelog.clear();
    s.topics.monitor_changelog.clear();
    s.join.idle_timeout = Duration::from_secs(2);
    s.join.max_task_idle = Duration::from_millis(500);
    s
}

/// Deletes the topics of one phase (inputs, outputs, changelogs): the runs add up to
/// gigabytes, and a broker filling its disk and page cache skews the next run.
async fn drop_topics(s: &Settings) -> anyhow::Result<()> {
    let t = &s.topics;
    let join_changelog = s.join_changelog_topic();
    let monitor_changelog = s.monitor_changelog_topic();
    delete_topics(
        &s.kafka,
        &[
            &t.predictions,
            &t.ground_truth,
            &t.model_partials,
            &t.dead_letter,
            &t.drift_events,
            &t.retrain_events,
            &t.model_metrics,
            &join_changelog,
            &monitor_changelog,
        ],
    )
    .await?;
    Ok(())
}

async fn topics(s: &Settings, partitions: i32) -> anyhow::Result<()> {
    let t = &s.topics;
    let spec = |name: &str, partitions| TopicSpec {
        name: name.to_string(),
        partitions,
        configs: vec![],
    };
    create_topics(
        &s.kafka,
        &[
            spec(&t.predictions, partitions),
            spec(&t.ground_truth, partitions),
            spec(&t.model_partials, partitions),
            spec(&t.dead_letter, 1),
            spec(&t.drift_events, 1),
            spec(&t.retrain_events, 1),
            spec(&t.model_metrics, 1),
        ],
    )
    .await?;
    Ok(())
}

fn generator(
    seed: u64,
    predictions: u64,
    rate: f64,
    start_ms: i64,
    short_delays: bool,
) -> anyhow::Result<TrafficGenerator> {
    let mut c = GeneratorConfig::two_models(seed);
    c.predictions_per_second = rate;
    c.duration_ms = ((predictions as f64 / rate) * 1000.0).ceil() as i64;
    c.start_ms = start_ms;
    c.garbage_rate = 0.0;
    if short_delays {
        c.label_delay.median_ms = 200;
        c.label_delay.sigma = 0.5;
        c.label_delay.max_ms = 5_000;
    }
    Ok(TrafficGenerator::new(c)?)
}

struct Running {
    join: JoinStageHandle,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<driftwatch_worker::Result<()>>>,
}

fn start_pipeline(s: &Settings) -> anyhow::Result<Running> {
    let join = JoinStage::new(s.clone())?;
    let handle = join.handle();
    let monitor = MonitorStage::new(s.clone())?;
    let (a, arx) = oneshot::channel::<()>();
    let (b, brx) = oneshot::channel::<()>();
    let tasks = vec![
        tokio::spawn(join.run(async {
            let _ = arx.await;
        })),
        tokio::spawn(monitor.run(async {
            let _ = brx.await;
        })),
    ];
    Ok(Running {
        join: handle,
        stops: vec![a, b],
        tasks,
    })
}

async fn stop_pipeline(r: Running) -> anyhow::Result<()> {
    for s in r.stops {
        let _ = s.send(());
    }
    for t in r.tasks {
        t.await??;
    }
    Ok(())
}

fn processed(h: &JoinStageHandle) -> u64 {
    h.stats().events_in.values().sum()
}

/// Runs the benchmark and prints the figures.
pub async fn run(settings: &Settings, opts: BenchOptions) -> anyhow::Result<()> {
    println!(
        "driftwatch bench against {}",
        settings.kafka.bootstrap_servers
    );
    println!(
        "  {} predictions of 20 features, 2 models, ~95 % labeled, {} partitions per input, {}",
        opts.predictions,
        opts.partitions,
        if settings.kafka.exactly_once() {
            "exactly-once"
        } else {
            "at-least-once"
        }
    );

    match opts.latency_load {
        Some(load) => latency(settings, &opts, load).await,
        None => {
            let max_rate = maximum(settings, &opts).await?;
            latency(settings, &opts, max_rate / 2.0).await?;
            detection(settings).await
        }
    }
}

/// Phase 6: drift onset → drift event, with the demo's scenario (two hours of event time
/// replayed in 40 s, the `fraud` model drifting halfway) and settings, on this broker.
async fn detection(settings: &Settings) -> anyhow::Result<()> {
    println!("  detection:    the demo's scenario on this broker (`driftwatch demo --bootstrap-servers`):");
    let s = crate::demo::demo_settings(settings, &settings.kafka.bootstrap_servers)?;
    crate::demo::create_real_topics(&s).await?;
    let report = crate::demo::run(
        s.clone(),
        crate::demo::DemoOptions {
            traffic_time: Duration::from_secs(40),
            event_span: Duration::from_secs(2 * 3600),
            predictions: 24_000,
            // The demo's own traffic, so the figure is the demo's.
            seed: crate::demo::DEFAULT_SEED,
            live: false,
        },
    )
    .await;
    crate::demo::delete_real_topics(&s).await?;
    let report = report?;
    let count = |model: &str| {
        (
            report
                .drift
                .iter()
                .filter(|e| e.model_id == model && e.state == driftwatch_core::DriftState::Drift)
                .count(),
            report
                .retrain
                .iter()
                .filter(|e| e.model_id == model)
                .count(),
        )
    };
    let ((drift, retrain), (stable_drift, stable_retrain)) = (count("fraud"), count("churn"));
    println!(
        "  detection:    `fraud` (drifts): {drift} drift events into DRIFT and {retrain} retrain events; `churn` (stable): {stable_drift} and {stable_retrain}"
    );
    match report.detection {
        Some(d) => println!(
            "  detection:    drift onset → drift event: {:.1} min of event time (the windows fill with drifted traffic), {:.1} s on the wall clock at 180× replay, of which {:.2} s after the traffic that triggered it was published",
            d.event_time_ms as f64 / 60_000.0,
            d.wall.as_secs_f64(),
            d.pipeline.as_secs_f64()
        ),
        None => println!(
            "  detection:    no drift event for `{}` within the run",
            crate::demo::DRIFTING_MODEL
        ),
    }
    Ok(())
}

/// Phases 1–4: the backlog, the raw consume rate, the pipeline's catch-up rate (returned,
/// inputs/s) and the restore.
async fn maximum(settings: &Settings, opts: &BenchOptions) -> anyhow::Result<f64> {
    // 1. Backlog.
    let s = fresh(settings, "max");
    topics(&s, opts.partitions).await?;
    let span_rate = 1000.0;
    let start = now_ms() - (opts.predictions as f64 / span_rate * 1000.0) as i64 - 3_600_000;
    let g = generator(opts.seed, opts.predictions, span_rate, start, false)?;
    let report = publish(
        &s.kafka,
        &s.topics,
        g,
        Pace::Unthrottled,
        std::future::pending(),
    )
    .await?;
    let total = report.predictions + report.labels;
    if report.failed > 0 {
        println!(
            "  note: {} records were not delivered and are left out",
            report.failed
        );
    }
    println!(
        "  produce:      {total} records in {:.2} s = {:.0} records/s",
        report.elapsed.as_secs_f64(),
        total as f64 / report.elapsed.as_secs_f64()
    );

    // 2. Raw consume with an empty handler.
    let consumer: StreamConsumer =
        consumer_config(&s.kafka, &format!("{}-raw", s.kafka.join_group_id)).create()?;
    consumer.subscribe(&[&s.topics.predictions, &s.topics.ground_truth])?;
    let mut stream = consumer.stream();
    let mut n = 0u64;
    let mut first: Option<Instant> = None;
    while n < total {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(_))) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
            }
            Ok(Some(Err(e))) => anyhow::bail!("raw consume: {e}"),
            _ => anyhow::bail!("raw consume stalled after {n} of {total} records"),
        }
    }
    let raw = first.map_or(Duration::ZERO, |f| f.elapsed());
    let raw_rate = n as f64 / raw.as_secs_f64().max(1e-9);
    drop(stream);
    drop(consumer);
    println!("  raw consume:  {n} records in {:.2} s = {raw_rate:.0} records/s (empty handler, from the first record)", raw.as_secs_f64());

    // 3. The pipeline catches up on the same backlog.
    let running = start_pipeline(&s)?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    loop {
        let p = processed(&running.join);
        if p > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if p >= total || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = first.map_or(Duration::ZERO, |f| f.elapsed());
    let p = processed(&running.join);
    let stats = running.join.stats();
    stop_pipeline(running).await?;
    let max_rate = p as f64 / took.as_secs_f64().max(1e-9);
    println!(
        "  pipeline:     {p} inputs through join + monitor in {:.2} s = {max_rate:.0} inputs/s ({:.0} % of raw consume)",
        took.as_secs_f64(),
        100.0 * max_rate / raw_rate
    );
    if let Some(h) = &stats.processing_micros {
        println!(
            "                decode+join per message: p50 {} µs, p99 {} µs, max {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        );
    }

    // 4. Restore the state the pipeline left behind.
    if s.kafka.exactly_once() {
        let join = JoinStage::new(s.clone())?;
        let handle = join.handle();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(join.run(async {
            let _ = rx.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(600);
        while handle.stats().restore.restores == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = stop.send(());
        task.await??;
        let r = handle.stats().restore;
        println!(
            "  restore:      {} changelog records ({:.1} MB) → {} join entries in {:.2} s = {:.0} records/s, {:.0} entries/s",
            r.records,
            r.bytes as f64 / 1e6,
            r.entries,
            r.seconds,
            r.records as f64 / r.seconds.max(1e-9),
            r.entries as f64 / r.seconds.max(1e-9)
        );
    }
    drop_topics(&s).await?;
    Ok(max_rate)
}

/// Phase 5: latency at `offered` inputs/s, published in real time.
async fn latency(settings: &Settings, opts: &BenchOptions, offered: f64) -> anyhow::Result<()> {
    let mut s = fresh(settings, "latency");
    // A metrics snapshot at every evaluation (default: every 10th), so the time until a label
    // shows in the published metrics is the pipeline's, not the snapshot interval's.
    s.monitor.metrics_interval = s.monitor.commit_interval / 2;
    // Windows end `maturity_ms` (15 min by default) before the latest bucket, to give labels
    // time to arrive; here the metrics are to show outcomes as soon as they are merged.
    s.monitor.detection.default.maturity_ms = 0;
    // The monitor applies an outcome once every join task announced a watermark past its
    // epoch (one bucket width); the watermark trails the data by the allowed lateness. With
    // the defaults (1 min, 5 s) that alone is 5–65 s in real time; this phase measures the
    // pipeline with 1 s buckets and 200 ms of lateness.
    s.join.bucket_width = Duration::from_secs(1);
    s.join.allowed_lateness = Duration::from_millis(200);
    topics(&s, opts.partitions).await?;
    let running = start_pipeline(&s)?;
    let (stop_metrics, metrics_stop) = oneshot::channel::<()>();
    let metrics = follow_metrics(&s, metrics_stop)?;
    tokio::time::sleep(Duration::from_secs(4)).await; // consumer groups form
    let rate = (offered / 1.95).max(1.0); // predictions/s; each brings ~0.95 label
    let n_lat = (rate * opts.latency_time.as_secs_f64()) as u64;
    // The traffic is generated before the clock starts, so the generator's own work does not
    // compete with the stages and the broker while latency is measured; its event times start
    // when publishing does. The time to generate it is estimated from a sample first.
    let sample = 20_000.min(n_lat.max(1));
    let t = Instant::now();
    let sampled = generator(opts.seed + 1, sample, rate, now_ms(), true)?.count();
    let per_record = t.elapsed().as_secs_f64() / sampled.max(1) as f64;
    let lead = Duration::from_secs_f64(per_record * (n_lat as f64 * 2.0) * 1.5 + 1.0);
    let start = now_ms() + i64::try_from(lead.as_millis()).unwrap_or(i64::MAX / 2);
    let records: Vec<_> = generator(opts.seed + 1, n_lat.max(1), rate, start, true)?.collect();
    let labels = label_times(&records);
    let wait = start - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    } else {
        println!(
            "  note: traffic generated {} ms after its start time",
            -wait
        );
    }
    let report = publish(
        &s.kafka,
        &s.topics,
        records.iter(),
        Pace::TimeScale(1.0),
        std::future::pending(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = running.join.stats();
    stop_pipeline(running).await?;
    let _ = stop_metrics.send(());
    let sightings = metrics.await?;
    let to_metrics = metrics_latency(&labels, &sightings);
    drop(records);
    // Predictions span `latency_time`; their labels follow within seconds at the same rate.
    println!(
        "  latency:      {:.0} inputs/s offered in real time ({} predictions over {} s, {} labels), published in {:.1} s",
        (report.predictions + report.labels) as f64 / opts.latency_time.as_secs_f64(),
        report.predictions,
        opts.latency_time.as_secs(),
        report.labels,
        report.elapsed.as_secs_f64(),
    );
    match &stats.outcome_lag_ms {
        Some(h) if !h.is_empty() => println!(
            "                label produced → outcome joined: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} outcomes)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max(),
            h.len()
        ),
        _ => println!("                no outcome was joined"),
    }
    // `per_unit`: the histogram's units in one printed `unit`.
    let quantiles = |name: &str,
                     unit: &str,
                     per_unit: u64,
                     h: &Option<hdrhistogram::Histogram<u64>>| {
        if let Some(h) = h.as_ref().filter(|h| !h.is_empty()) {
            let q = |v: u64| v / per_unit;
            println!(
                "                {name}: p50 {} {unit}, p90 {} {unit}, p99 {} {unit}, max {} {unit}",
                q(h.value_at_quantile(0.5)),
                q(h.value_at_quantile(0.9)),
                q(h.value_at_quantile(0.99)),
                q(h.max())
            );
        }
    };
    let shown: u64 = to_metrics.as_ref().map_or(0, |h| h.len());
    let expected: usize = labels.values().map(Vec::len).sum();
    quantiles(
        &format!("label produced → in the published metrics ({shown} of {expected} labels)"),
        "ms",
        1,
        &to_metrics,
    );
    quantiles(
        "generator behind its schedule",
        "ms",
        1,
        &report.behind_schedule_ms,
    );
    quantiles(
        "record sent → read by the stage",
        "ms",
        1,
        &stats.input_age_ms,
    );
    quantiles("decode+join per message", "µs", 1, &stats.processing_micros);
    quantiles(
        "loop held by a commit's batch",
        "µs",
        1,
        &stats.batch_micros,
    );
    quantiles(
        "transaction (commit start → committed)",
        "ms",
        1000,
        &stats.commit_micros,
    );
    drop_topics(&s).await?;
    Ok(())
}

/// A metrics snapshot as the bench saw it: when it arrived (wall clock, ms), for which model,
/// and how many matched outcomes its window held.
#[derive(Debug, Clone, PartialEq)]
struct Sighting {
    at_ms: i64,
    model: String,
    window_ms: i64,
    labeled: u64,
}

/// Reads the metrics topic (committed records only, like a dashboard) until `stop`.
fn follow_metrics(
    s: &Settings,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<tokio::task::JoinHandle<Vec<Sighting>>> {
    let consumer: StreamConsumer =
        consumer_config(&s.kafka, &format!("{}-metrics-reader", s.monitor.group_id))
            .set("enable.auto.commit", "false")
            .create()?;
    consumer.subscribe(&[&s.topics.model_metrics])?;
    Ok(tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut stream = consumer.stream();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                m = stream.next() => match m {
                    Some(Ok(m)) => {
                        if let Some(Ok(r)) = m.payload().map(from_avro::<ModelMetrics>) {
                            seen.push(Sighting {
                                at_ms: now_ms(),
                                model: r.model_id,
                                window_ms: r.window_end - r.window_start,
                                labeled: r.labeled,
                            });
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        seen
    }))
}

/// Event times of the labels that will be joined (originals, not duplicates), per model,
/// sorted. With traffic published in real time, a label's event time is its publication time.
fn label_times(records: &[GeneratedRecord]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        if let (Side::Labels, RecordKind::Original, Some(model)) = (r.side, r.kind, &r.model_id) {
            out.entry(model.clone()).or_default().push(r.event_time);
        }
    }
    for times in out.values_mut() {
        times.sort_unstable();
    }
    out
}

/// Per label: the time from its publication until a published snapshot of its model's
/// widest window counted it. Snapshots carry counts, not ids, so a snapshot counting `n`
/// outcomes is taken to show the `n` earliest labels: exact when labels are joined in the
/// order they were published, and off by at most the skew between partitions otherwise.
fn metrics_latency(
    labels: &BTreeMap<String, Vec<i64>>,
    sightings: &[Sighting],
) -> Option<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).ok()?;
    for (model, times) in labels {
        let Some(widest) = sightings
            .iter()
            .filter(|s| &s.model == model)
            .map(|s| s.window_ms)
            .max()
        else {
            continue;
        };
        let mut shown = 0usize;
        let mut seen: Vec<&Sighting> = sightings
            .iter()
            .filter(|s| &s.model == model && s.window_ms == widest)
            .collect();
        seen.sort_by_key(|s| s.at_ms);
        for s in seen {
            let upto = usize::try_from(s.labeled)
                .unwrap_or(usize::MAX)
                .min(times.len());
            for t in times.iter().take(upto).skip(shown) {
                h.saturating_record(u64::try_from(s.at_ms - t).unwrap_or(0));
            }
            shown = shown.max(upto);
        }
    }
    Some(h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seen(at_ms: i64, model: &str, window_ms: i64, labeled: u64) -> Sighting {
        Sighting {
            at_ms,
            model: model.into(),
            window_ms,
            labeled,
        }
    }

    #[test]
    fn a_snapshot_shows_the_earliest_labels_it_counts() {
        let labels = BTreeMap::from([("m".to_string(), vec![100, 200, 300])]);
        let sightings = [
            seen(1_000, "m", 60_000, 2),
            // A narrower window is ignored; a count that does not grow shows nothing new.
            seen(1_100, "m", 30_000, 3),
            seen(1_500, "m", 60_000, 2),
            seen(2_300, "m", 60_000, 3),
            seen(2_000, "other", 60_000, 9),
        ];
        let h = metrics_latency(&labels, &sightings).unwrap();
        assert_eq!(h.len(), 3);
        // 100 and 200 seen at 1 000, 300 at 2 300.
        assert!(h.equivalent(h.min(), 800));
        assert!(h.equivalent(h.value_at_quantile(0.5), 900));
        assert!(h.equivalent(h.max(), 2_000));
    }

    #[test]
    fn labels_never_shown_are_left_out() {
        let labels = BTreeMap::from([("m".to_string(), vec![100, 200])]);
        let h = metrics_latency(&labels, &[seen(500, "m", 1, 1)]).unwrap();
        assert_eq!(h.len(), 1);
        assert!(metrics_latency(&labels, &[]).unwrap().is_empty());
    }
}
