//! `driftwatch bench`: end-to-end throughput and latency against a real broker.
//!
//! 1. **Produce** a backlog of generated predictions and labels (historical event times) as fast
//!    as the producer goes.
//! 2. **Raw consume**: a consumer with driftwatch's settings and an empty handler reads the whole
//!    backlog — the client's ceiling on this machine and broker.
//! 3. **Join** and **end to end**: both stages, in this process, catch up on the same backlog.
//!    Two rates, inputs per second of wall time from the first input the join consumed: to the
//!    join's commit past the last input (the join's throughput), and to the monitor's commit
//!    after it judged the backlog's last epoch (the pipeline's); see [`completion`].
//! 4. **Restore** (exactly-once): a new join stage in the same group restores the state the
//!    pipeline left in its changelog; records, entries, bytes and seconds are reported.
//! 5. **Latency at half load**: fresh topics, traffic published in real time at 50 % of the
//!    join's throughput with short label delays; the join stage records, per matched outcome, the
//!    time from the later of prediction and label (event time = publish time here) to the match.
//! 6. **Detection**: the demo's scenario on this broker, drift onset → drift event.

mod backlog;
mod completion;
mod latency;
mod outside;
pub mod overload;
pub mod state;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use driftwatch_generator::{GeneratorConfig, TrafficGenerator};
use driftwatch_worker::clients::{create_topics, delete_topics};
use driftwatch_worker::settings::Settings;
use driftwatch_worker::topics::owned_by_run;

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
    /// Labels on their CRC32 partition, misrouted for the join (which then runs with
    /// `join.misrouted = "repartition"`).
    pub crc32_labels: bool,
}

impl BenchOptions {
    /// The `crc32_labels` argument of [`driftwatch_generator::publish::publish_with`].
    fn crc32_labels(&self) -> Option<i32> {
        self.crc32_labels.then_some(self.partitions)
    }
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
    s.topics.repartition = format!("bench-repartition-{id}");
    s.kafka.join_group_id = format!("bench-join-{id}");
    s.monitor.group_id = format!("bench-monitor-{id}");
    // Changelogs named after the run's groups, never a configured one (they are deleted).
    s.topics.join_changelog.clear();
    s.topics.monitor_changelog.clear();
    s.join.idle_timeout = Duration::from_secs(2);
    s
}

/// Deletes the topics of one phase (inputs, outputs, changelogs): the runs add up to
/// gigabytes, and a broker filling its disk and page cache skews the next run.
async fn drop_topics(s: &Settings) -> anyhow::Result<()> {
    let names: Vec<String> = owned_by_run(s, 1).into_iter().map(|t| t.name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    delete_topics(&s.kafka, &names).await?;
    Ok(())
}

/// Creates the topics of one phase, `partitions` per input.
async fn topics(s: &Settings, partitions: i32) -> anyhow::Result<()> {
    create_topics(&s.kafka, &owned_by_run(s, partitions)).await?;
    Ok(())
}

/// How long labels take in the generated traffic.
#[derive(Debug, Clone, Copy)]
enum LabelDelays {
    /// The generator's log-normal delays (median 1 min), none longer than this many ms (a
    /// longer one is a lost label).
    AtMost(i64),
    /// Live traffic whose labels follow within seconds (median 200 ms, at most 5 s).
    Short,
}

fn generator(
    seed: u64,
    predictions: u64,
    rate: f64,
    start_ms: i64,
    delays: LabelDelays,
) -> anyhow::Result<TrafficGenerator> {
    let mut c = GeneratorConfig::two_models(seed);
    c.predictions_per_second = rate;
    c.duration_ms = ((predictions as f64 / rate) * 1000.0).ceil() as i64;
    c.start_ms = start_ms;
    c.garbage_rate = 0.0;
    match delays {
        LabelDelays::AtMost(max_ms) => c.label_delay.max_ms = c.label_delay.max_ms.min(max_ms),
        LabelDelays::Short => {
            c.label_delay.median_ms = 200;
            c.label_delay.sigma = 0.5;
            c.label_delay.max_ms = 5_000;
        }
    }
    Ok(TrafficGenerator::new(c)?)
}

/// Runs the benchmark and prints the figures.
pub async fn run(settings: &Settings, opts: BenchOptions) -> anyhow::Result<()> {
    println!(
        "driftwatch bench against {}",
        settings.kafka.bootstrap_servers
    );
    println!(
        "  {} predictions of 20 features, 2 models, ~95 % labeled{}, {} partitions per input, {}",
        opts.predictions,
        if opts.crc32_labels {
            " (labels on their CRC32 partition, join.misrouted = repartition)"
        } else {
            ""
        },
        opts.partitions,
        if settings.kafka.exactly_once() {
            "exactly-once"
        } else {
            "at-least-once"
        }
    );

    match opts.latency_load {
        Some(load) => latency::latency(settings, &opts, load).await,
        None => {
            let join_rate = backlog::maximum(settings, &opts).await?;
            latency::latency(settings, &opts, join_rate / 2.0).await?;
            detection(settings).await
        }
    }
}

/// Phase 6: drift onset → drift event, with the demo's scenario (two hours of event time
/// replayed in 40 s, the `fraud` model drifting halfway) and settings, on this broker.
async fn detection(settings: &Settings) -> anyhow::Result<()> {
    println!("  detection:    the demo's scenario on this broker (`driftwatch demo --bootstrap-servers`):");
    // The demo's own producers use murmur2: nothing to repartition.
    let mut settings = settings.clone();
    settings.join.misrouted = driftwatch_worker::settings::MisroutedMode::Account;
    let s = crate::demo::demo_settings(&settings, &settings.kafka.bootstrap_servers)?;
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
            ui: false,
            console_bind: None,
            log_file: None,
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
