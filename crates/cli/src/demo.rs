//! `driftwatch demo`: the whole pipeline on an embedded Kafka in about a minute.
//!
//! An in-process Kafka (librdkafka's mock cluster: the real protocol, no broker to install)
//! carries generated traffic for two models; halfway through, the `fraud` model's accuracy
//! falls from 0.92 to 0.70 and its feature `x0` shifts, while `churn` stays stable. The join and
//! monitor stages run in this process; a live table shows each model, and every drift and
//! retrain event is printed as it is read back from its output topic. The web console
//! ([`driftwatch_worker::console`]) serves the same pipeline; its URL is printed first, and
//! `--ui` keeps it up after the scenario. Standard output carries only the table, the events
//! and the summary: logs go to a file (or to stderr with `--verbose`).
//!
//! The mock cluster keeps at most 100 000 messages or 5 MiB per partition and drops older data
//! silently, and it does not apply transactions: the demo is sized to stay well under those
//! limits (about 24 000 predictions over 8 partitions), and it is not evidence that anything
//! works on a real broker — the integration tests are. `--bootstrap-servers` runs the same demo
//! against a real broker.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use driftwatch_codec::{from_avro, AvroRecord};
use driftwatch_core::{DriftEvent, DriftState, RetrainEvent};
use driftwatch_generator::publish::{publish, Pace};
use driftwatch_generator::{GeneratorConfig, Scenario, TrafficGenerator};
use driftwatch_worker::clients::{consumer_config, create_topics, delete_topics, TopicSpec};
use driftwatch_worker::http::MetricsServer;
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};

/// Partitions of the demo's drift and retrain event topics: one, like every output topic of
/// [`driftwatch_worker::topics::required`].
pub const EVENT_PARTITIONS: i32 = 1;

/// Partitions of the demo's input and internal topics.
pub const PARTITIONS: i32 = 8;

/// Options of one demo run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long the traffic takes on the wall clock.
    pub traffic_time: Duration,
    /// Event-time span of the traffic.
    pub event_span: Duration,
    /// Predictions in all.
    pub predictions: u64,
    pub seed: u64,
    /// Print the live table (off: events and the summary only).
    pub live: bool,
    /// Keep the web console up after the scenario, until Ctrl-C.
    pub ui: bool,
    /// Address of the web console; `None`: no console, and no console or log lines printed
    /// (the bench's detection phase).
    pub console_bind: Option<SocketAddr>,
    /// Where the logs go (printed at start); `None`: standard error.
    pub log_file: Option<PathBuf>,
}

/// The embedded broker: librdkafka's mock cluster, kept alive while the demo runs.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
}

impl EmbeddedKafka {
    pub fn start() -> anyhow::Result<Self> {
        let cluster = MockCluster::new(1).context("starting the embedded Kafka (mock cluster)")?;
        Ok(EmbeddedKafka { cluster })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// The mock cluster has no CreateTopics API: topics are made directly.
    pub fn create_topics(&self, specs: &[TopicSpec]) -> anyhow::Result<()> {
        for s in specs {
            self.cluster
                .create_topic(&s.name, s.partitions, 1)
                .with_context(|| format!("creating topic {}", s.name))?;
        }
        Ok(())
    }
}

/// Settings of the demo pipeline against `bootstrap`.
pub fn demo_settings(base: &Settings, bootstrap: &str) -> anyhow::Result<Settings> {
    let mut s = base.clone();
    s.kafka.bootstrap_servers = bootstrap.to_string();
    let suffix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    s.kafka.join_group_id = format!("driftwatch-demo-join-{suffix}");
    s.monitor.group_id = format!("driftwatch-demo-monitor-{suffix}");
    // Topics of their own: on a real broker a second run must not read the first one's
    // traffic (its groups are new and start from the earliest offsets).
    let t = &mut s.topics;
    for topic in [
        &mut t.predictions,
        &mut t.ground_truth,
        &mut t.model_partials,
        &mut t.dead_letter,
        &mut t.drift_events,
        &mut t.retrain_events,
        &mut t.model_metrics,
    ] {
        *topic = format!("driftwatch-demo-{suffix}-{topic}");
    }
    // Changelogs named after the run's groups, never a configured one.
    t.join_changelog.clear();
    t.monitor_changelog.clear();
    s.join.label_timeout = Duration::from_secs(30 * 60);
    s.join.orphan_timeout = Duration::from_secs(30 * 60);
    // The 4 MiB fetches driftwatch uses by default pay off when catching up on a real broker's
    // backlog; the demo's traffic is small and its pacing was tuned with librdkafka's 1 MiB.
    s.kafka
        .properties
        .entry("max.partition.fetch.bytes".into())
        .or_insert_with(|| "1048576".into());
    s.join.flush_interval = Duration::from_millis(250);
    s.monitor.commit_interval = Duration::from_millis(250);
    s.monitor.metrics_interval = Duration::from_secs(1);
    let d = &mut s.monitor.detection.default;
    d.windows = vec!["15m".into(), "1h".into()];
    d.maturity_ms = 5 * 60_000;
    d.accuracy_drop.window = "15m".into();
    d.feature_drift.window = "30m".into();
    d.feature_drift.reference = "30m".into();
    s.validate()?;
    Ok(s)
}

/// Every topic the demo uses: the pipeline's own (inputs and internal topics with
/// [`PARTITIONS`]), except the shared reference profiles.
pub fn demo_topics(s: &Settings) -> Vec<TopicSpec> {
    driftwatch_worker::topics::owned_by_run(s, PARTITIONS)
}

/// Creates the topics on a real broker.
pub async fn create_real_topics(s: &Settings) -> anyhow::Result<()> {
    create_topics(&s.kafka, &demo_topics(s)).await?;
    Ok(())
}

/// Deletes the run's topics from a real broker, changelogs included.
pub async fn delete_real_topics(s: &Settings) -> anyhow::Result<()> {
    let names: Vec<String> = demo_topics(s).into_iter().map(|t| t.name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_topics(&s.kafka, &names).await?;
    Ok(())
}

enum Published {
    Drift(DriftEvent),
    Retrain(RetrainEvent),
}

/// Reads `topic` (its [`EVENT_PARTITIONS`] partitions) from the start and forwards each
/// decoded record.
///
/// The partitions are assigned, not subscribed to: the two readers of a run then need no
/// consumer group (sharing one, each rebalanced the other while it joined, and an error
/// handed to the stream meanwhile ended the reader: a run showed no event although the
/// monitor had published them). Errors are skipped; the stream ends only with the consumer.
fn follow<T: AvroRecord + Send + 'static>(
    s: &Settings,
    topic: &str,
    wrap: fn(T) -> Published,
    tx: mpsc::UnboundedSender<Published>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let consumer: StreamConsumer =
        consumer_config(&s.kafka, &format!("{}-reader", s.monitor.group_id))
            .set("enable.auto.commit", "false")
            .create()?;
    let mut partitions = TopicPartitionList::new();
    for p in 0..EVENT_PARTITIONS {
        partitions.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&partitions)?;
    let topic = topic.to_string();
    Ok(tokio::spawn(async move {
        let mut stream = consumer.stream();
        while let Some(m) = stream.next().await {
            match m {
                Ok(m) => {
                    if let Some(Ok(record)) = m.payload().map(from_avro::<T>) {
                        if tx.send(wrap(record)).is_err() {
                            break;
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, topic, "event reader"),
            }
        }
    }))
}

/// What a demo run saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub drift: Vec<DriftEvent>,
    pub retrain: Vec<RetrainEvent>,
    /// The drifting model's first drift event into DRIFT, timed.
    pub detection: Option<Detection>,
}

/// How long the first drift event of the drifting model took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Event time from the drift onset to the event's `detected_at`: the statistics' share
    /// (windows must fill with drifted traffic), independent of the replay speed.
    pub event_time_ms: i64,
    /// Wall clock from the publication of the onset's traffic to the event's arrival on its
    /// topic, at the demo's replay speed.
    pub wall: Duration,
    /// Wall clock from the publication of the traffic at `detected_at` to the event's
    /// arrival: the pipeline's share (join flush, monitor evaluation, two transactions).
    pub pipeline: Duration,
}

/// Seed of the demo's traffic unless one is given.
pub const DEFAULT_SEED: u64 = 7;

/// The model whose accuracy and inputs drift in the demo's scenario.
pub const DRIFTING_MODEL: &str = "fraud";

/// Runs the demo; returns the drift and retrain events it read back.
pub async fn run(settings: Settings, opts: DemoOptions) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let span_ms = i64::try_from(opts.event_span.as_millis()).context("event span")?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    // The traffic starts on a bucket boundary: verdicts follow event time, so every run of the
    // demo with one seed then puts the same records in the same buckets and prints the same
    // events at the same event times (from the wall clock alone they would shift with it).
    let bucket_ms = i64::try_from(settings.join.bucket_width.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let mut gen_cfg = GeneratorConfig::two_models(opts.seed);
    gen_cfg.start_ms = (now_ms - span_ms).div_euclid(bucket_ms) * bucket_ms;
    gen_cfg.duration_ms = span_ms;
    gen_cfg.predictions_per_second = opts.predictions as f64 / opts.event_span.as_secs_f64();
    gen_cfg.scenario = Scenario::Drift;
    // A label tail of hours would outlast the demo: labels slower than 20 minutes never come.
    gen_cfg.label_delay.max_ms = 20 * 60_000;
    let gen_cfg = gen_cfg.resolved();
    let drift_at = gen_cfg.start_ms + span_ms / 2;
    let start_ms = gen_cfg.start_ms;
    let generator = TrafficGenerator::new(gen_cfg)?;
    let time_scale = opts.event_span.as_secs_f64() / opts.traffic_time.as_secs_f64();

    println!(
        "driftwatch demo: {} predictions of models `fraud` and `churn` over {} of event time, replayed in {} s",
        opts.predictions,
        humantime::format_duration(opts.event_span),
        opts.traffic_time.as_secs()
    );
    println!("at event time +{} the `fraud` model's accuracy falls 0.92 → 0.70 and its feature x0 shifts; `churn` stays stable\n",
        humantime::format_duration(opts.event_span / 2));

    let pipeline = Pipeline::new(&settings, Role::Both)?;
    let console = match opts.console_bind {
        Some(bind) => {
            let (url, stop) = serve_console(&pipeline, bind).await?;
            println!("console: {url}");
            match &opts.log_file {
                Some(path) => println!("logs:    {} (--verbose: on stderr)", path.display()),
                None => println!("logs:    on stderr"),
            }
            println!();
            Some((url, stop))
        }
        None => None,
    };
    let handles = pipeline.handles();
    let (Some(join_handle), Some(monitor_handle)) = (handles.join, handles.monitor) else {
        anyhow::bail!("the demo's pipeline runs both stages");
    };
    let pipeline = pipeline.start();

    let (tx, mut rx) = mpsc::unbounded_channel();
    let followers = vec![
        follow::<DriftEvent>(
            &settings,
            &settings.topics.drift_events,
            Published::Drift,
            tx.clone(),
        )?,
        follow::<RetrainEvent>(
            &settings,
            &settings.topics.retrain_events,
            Published::Retrain,
            tx,
        )?,
    ];

    // Give the consumer groups a moment to form before the traffic starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kafka = settings.kafka.clone();
    let topics = settings.topics.clone();
    let (stop_traffic, traffic_stop_rx) = oneshot::channel::<()>();
    // The publisher paces event time from its first record (at `start_ms`) on this clock.
    let traffic_started = Instant::now();
    let published_at = |event_time: i64| {
        traffic_started
            + Duration::from_secs_f64(
                ((event_time - start_ms).max(0) as f64 / 1000.0) / time_scale.max(1e-9),
            )
    };
    let mut detection = None;
    let mut traffic = tokio::spawn(async move {
        publish(
            &kafka,
            &topics,
            generator,
            Pace::TimeScale(time_scale),
            async {
                let _ = traffic_stop_rx.await;
            },
        )
        .await
    });

    let mut drift = Vec::new();
    let mut retrain = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut traffic_done = false;
    let mut settle_until: Option<Instant> = None;
    let hard_stop = started + opts.traffic_time + Duration::from_secs(45);
    loop {
        tokio::select! {
            r = &mut traffic, if !traffic_done => {
                traffic_done = true;
                let report = r.context("traffic task")??;
                println!("traffic done: {} predictions and {} labels published", report.predictions, report.labels);
                settle_until = Some(Instant::now() + Duration::from_secs(8));
            }
            Some(p) = rx.recv() => match p {
                Published::Drift(e) => {
                    println!(
                        "  ⚑ drift event   {:<6} {:<3} {:<14} {:>9} → {:<9} {} = {:.3} (threshold {:.3}) at +{}",
                        e.model_id, e.model_version, detector_name(&e), e.previous_state.as_str(), e.state.as_str(),
                        e.statistic, e.value, e.threshold, offset(e.detected_at, drift_at - span_ms / 2)
                    );
                    if detection.is_none() && e.model_id == DRIFTING_MODEL && e.state == DriftState::Drift {
                        let now = Instant::now();
                        detection = Some(Detection {
                            event_time_ms: e.detected_at - drift_at,
                            wall: now.saturating_duration_since(published_at(drift_at)),
                            pipeline: now.saturating_duration_since(published_at(e.detected_at)),
                        });
                    }
                    drift.push(e);
                }
                Published::Retrain(e) => {
                    println!(
                        "  ↻ retrain event {:<6} {:<3} train on [+{}, +{}]{} reasons: {}",
                        e.model_id, e.model_version, offset(e.train_from, drift_at - span_ms / 2),
                        offset(e.train_to, drift_at - span_ms / 2), if e.dry_run { " (dry run)" } else { "" },
                        e.reasons.join("; ")
                    );
                    retrain.push(e);
                }
            },
            _ = tick.tick() => {
                if opts.live {
                    print_table(&join_handle, &monitor_handle, &drift, started, drift_at - span_ms / 2);
                }
                if settle_until.is_some_and(|t| Instant::now() >= t) || Instant::now() >= hard_stop {
                    break;
                }
            }
        }
    }
    let _ = stop_traffic.send(());
    println!("stopping the pipeline: the last output is committed");
    pipeline.stop().await?;
    for f in followers {
        f.abort();
    }
    print_summary(&join_handle.stats(), &drift, &retrain, started);
    if let Some(d) = &detection {
        println!(
            "  {DRIFTING_MODEL}: first drift event {} of event time after the onset ({:.1} s on the wall clock at this replay speed; {:.2} s after the traffic that triggered it was published)",
            humantime::format_duration(Duration::from_secs(d.event_time_ms.max(0).unsigned_abs() / 1000)),
            d.wall.as_secs_f64(),
            d.pipeline.as_secs_f64()
        );
    }
    if let Some((url, stop)) = console {
        if opts.ui {
            println!("\nthe console stays up at {url} — Ctrl-C to stop");
            let _ = tokio::signal::ctrl_c().await;
        }
        let _ = stop.send(());
    }
    Ok(DemoReport {
        drift,
        retrain,
        detection,
    })
}

/// Serves the web console (and `/metrics`) of the demo's pipeline on `bind`, or on any free
/// port of the same address when that one is taken; returns its URL and its stop switch.
async fn serve_console(
    pipeline: &Pipeline,
    bind: SocketAddr,
) -> anyhow::Result<(String, oneshot::Sender<()>)> {
    let server = match MetricsServer::bind(bind).await {
        Ok(s) => s,
        Err(_) => MetricsServer::bind(SocketAddr::new(bind.ip(), 0))
            .await
            .context("the console's address")?,
    };
    let mut addr = server.local_addr()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let handles = pipeline.stage_handles();
    let console = handles.clone();
    let server = server.with_console(move || console.console());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let stopped = async {
            let _ = stopped.await;
        };
        if let Err(e) = server.run(move || handles.status(), stopped).await {
            tracing::error!(error = %e, "console stopped");
        }
    });
    Ok((format!("http://{addr}/"), stop))
}

fn detector_name(e: &DriftEvent) -> String {
    match &e.feature {
        Some(f) => format!("{}:{f}", e.detector),
        None => e.detector.clone(),
    }
}

fn offset(t: i64, start: i64) -> String {
    let minutes = (t - start).max(0) / 60_000;
    format!("{}h{:02}m", minutes / 60, minutes % 60)
}

fn print_table(
    join: &driftwatch_worker::join::JoinStageHandle,
    monitor: &driftwatch_worker::monitor::MonitorStageHandle,
    drift: &[DriftEvent],
    started: Instant,
    start_ms: i64,
) {
    let js = join.stats();
    let ms = monitor.stats();
    // A model's state is the most severe of its detectors' current states.
    let mut per_detector: BTreeMap<(&str, &str, Option<&str>), DriftState> = BTreeMap::new();
    for e in drift {
        per_detector.insert((&e.model_id, &e.detector, e.feature.as_deref()), e.state);
    }
    let severity = |s: DriftState| match s {
        DriftState::Ok => 0,
        DriftState::Recovered => 1,
        DriftState::Warning => 2,
        DriftState::Drift => 3,
    };
    let mut states: BTreeMap<&str, DriftState> = BTreeMap::new();
    for ((model, _, _), state) in per_detector {
        let e = states.entry(model).or_insert(DriftState::Ok);
        if severity(state) > severity(*e) {
            *e = state;
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "t={:>3}s  event time +{}  inputs accounted: {}",
        started.elapsed().as_secs(),
        if ms.progress_ms > 0 {
            offset(ms.progress_ms, start_ms)
        } else {
            "-".into()
        },
        js.total().predictions + js.total().labels
    );
    let _ = writeln!(
        out,
        "  {:<6} {:<3} {:>8} {:>9} {:>9} {:>9} {:>9}  state",
        "model", "ver", "matched", "acc(15m)", "acc(1h)", "cov(15m)", "rate/s"
    );
    if std::env::var_os("DRIFTWATCH_DEMO_DEBUG").is_some() {
        for m in &ms.latest_metrics {
            let _ = writeln!(out, "    {m:?}");
        }
    }
    let mut rows: BTreeMap<(String, String), [Option<f64>; 4]> = BTreeMap::new();
    for m in &ms.latest_metrics {
        let row = rows
            .entry((m.model_id.clone(), m.model_version.clone()))
            .or_default();
        let get = |name: &str| m.metrics.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        match m.window.as_str() {
            "15m" => {
                row[0] = get("accuracy");
                row[2] = Some(m.label_coverage);
                row[3] = get("prediction_rate");
            }
            "1h" => row[1] = get("accuracy"),
            _ => {}
        }
    }
    let fmt = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
    // Rows without a version hold only labels that never met a prediction (orphans and
    // duplicates attributed by the label's model id): the summary shows them.
    for ((model, version), r) in rows.into_iter().filter(|((_, v), _)| !v.is_empty()) {
        let matched = js
            .per_model
            .get(&(model.clone(), version.clone()))
            .map_or(0, |c| c.matched);
        let state = states.get(model.as_str()).map_or("OK", |s| s.as_str());
        let _ = writeln!(
            out,
            "  {:<6} {:<3} {:>8} {:>9} {:>9} {:>9} {:>9}  {}",
            model,
            version,
            matched,
            fmt(r[0]),
            fmt(r[1]),
            fmt(r[2]),
            fmt(r[3]),
            state
        );
    }
}

fn print_summary(
    js: &driftwatch_worker::join::JoinStats,
    drift: &[DriftEvent],
    retrain: &[RetrainEvent],
    started: Instant,
) {
    println!("\nsummary after {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "  {:<8} {:>11} {:>8} {:>8} {:>8} {:>7} {:>10} {:>5} {:>13}",
        "model",
        "predictions",
        "labels",
        "matched",
        "expired",
        "orphan",
        "duplicates",
        "late",
        "dead-lettered"
    );
    for ((model, version), c) in &js.per_model {
        let name = if version.is_empty() {
            model.clone()
        } else {
            format!("{model}/{version}")
        };
        println!(
            "  {:<8} {:>11} {:>8} {:>8} {:>8} {:>7} {:>10} {:>5} {:>13}",
            name,
            c.predictions,
            c.labels,
            c.matched,
            c.expired_unlabeled,
            c.orphan_labels,
            c.duplicate_predictions + c.duplicate_labels,
            c.late_labels,
            c.dead_lettered
        );
    }
    for m in ["fraud", "churn"] {
        let d = drift
            .iter()
            .filter(|e| e.model_id == m && e.state == DriftState::Drift)
            .count();
        let r = retrain.iter().filter(|e| e.model_id == m).count();
        println!("  {m}: {d} drift event(s) into DRIFT, {r} retrain event(s)");
    }
}
