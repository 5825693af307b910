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

use driftwatch_generator::{GeneratorConfig, TrafficGenerator};
use driftwatch_worker::clients::{consumer_config, create_topics, TopicSpec};
use driftwatch_worker::join_stage::{JoinStage, JoinStageHandle};
use driftwatch_worker::monitor_stage::MonitorStage;
use driftwatch_worker::settings::Settings;
use driftwatch_worker::traffic::{publish, Pace};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
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
    s.join.idle_timeout = Duration::from_secs(2);
    s.join.max_task_idle = Duration::from_millis(500);
    s
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

    let offered = match opts.latency_load {
        Some(load) => load,
        None => maximum(settings, &opts).await? / 2.0,
    };
    latency(settings, &opts, offered).await
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
    Ok(max_rate)
}

/// Phase 5: latency at `offered` inputs/s, published in real time.
async fn latency(settings: &Settings, opts: &BenchOptions, offered: f64) -> anyhow::Result<()> {
    let s = fresh(settings, "latency");
    topics(&s, opts.partitions).await?;
    let running = start_pipeline(&s)?;
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
        records.into_iter(),
        Pace::TimeScale(1.0),
        std::future::pending(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = running.join.stats();
    stop_pipeline(running).await?;
    println!(
        "  latency:      {:.0} inputs/s offered for {:.0} s ({} predictions, {} labels)",
        (report.predictions + report.labels) as f64 / report.elapsed.as_secs_f64(),
        report.elapsed.as_secs_f64(),
        report.predictions,
        report.labels
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
    let quantiles = |name: &str, unit: &str, h: &Option<hdrhistogram::Histogram<u64>>| {
        if let Some(h) = h.as_ref().filter(|h| !h.is_empty()) {
            println!(
                "                {name}: p50 {} {unit}, p90 {} {unit}, p99 {} {unit}, max {} {unit}",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.max()
            );
        }
    };
    quantiles(
        "generator behind its schedule",
        "ms",
        &report.behind_schedule_ms,
    );
    quantiles("record sent → read by the stage", "ms", &stats.input_age_ms);
    quantiles("decode+join per message", "µs", &stats.processing_micros);
    quantiles("loop held by a commit's batch", "µs", &stats.batch_micros);
    Ok(())
}
